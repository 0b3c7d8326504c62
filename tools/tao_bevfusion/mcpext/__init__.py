"""MCP features beyond tools and resources, kept out of server.py: the dashboard App (apps), pushed
status updates (updates), and a person's approval before an expensive launch (consent).
Named so it never shadows the `mcp` SDK package."""
