"""tao-bevfusion: an agent skill plugin for NVIDIA TAO 5.5 BEVFusion (MCP server, CLI, plain functions).

Entry points: tao_bevfusion.api.TOOLS (the tools as plain functions), tao_bevfusion.server (MCP),
tao_bevfusion.cli (CLI).
"""

__version__ = "0.1.0"
