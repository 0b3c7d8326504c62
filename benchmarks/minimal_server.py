"""The cold-start baseline: a minimal MCPServer with one tool (same SDK, same interpreter)."""

from mcp.server import MCPServer

server = MCPServer("minimal")


@server.tool()
def ping() -> str:
    """Answer pong."""
    return "pong"


if __name__ == "__main__":
    server.run()
