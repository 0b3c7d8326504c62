"""tao-bevfusion: an agent skill plugin for NVIDIA TAO 5.5 BEVFusion (MCP server, CLI, plain functions).

Entry points: tools.api.TOOLS (the ten tools as plain functions), tools.server (MCP), tools.cli (CLI).
"""

__version__ = "0.1.0"
