"""Records the largest result any tool returned during the test run (issue 11 asks for the figure).

Every tool runs through its ToolDef.fn (MCP server, CLI and tao_bevfusion.api.call alike); each fn is wrapped once
per session to measure the text the agent reads and the structured JSON. The MCP server's own text cut
(TEXT_LIMIT) is measured too, at tao_bevfusion.server._result. Printed in the terminal summary and written to
.pytest-results/result_sizes.json.
"""

import json
import os
from pathlib import Path
from typing import Any

import pytest

LARGEST: dict[str, Any] = {"text": 0, "text_tool": "", "text_test": "", "mcp_text": 0, "mcp_test": "",
                           "structured": 0, "structured_tool": "", "error": 0, "error_tool": "",
                           "error_test": "", "calls": 0}
_CURRENT = {"test": ""}


def _wrap(t: Any) -> None:
    inner = t.fn

    def measured(inp: Any, ctx: Any) -> Any:
        from tao_bevfusion.core.errors import ToolError

        LARGEST["calls"] += 1
        try:
            model, text = inner(inp, ctx)
        except ToolError as exc:  # an error is a result the agent reads too
            size = len(exc.render())
            if size > LARGEST["error"]:
                LARGEST.update(error=size, error_tool=t.name, error_test=_CURRENT["test"])
            raise
        if len(text) > LARGEST["text"]:
            LARGEST.update(text=len(text), text_tool=t.name, text_test=_CURRENT["test"])
        size = len(model.model_dump_json())
        if size > LARGEST["structured"]:
            LARGEST.update(structured=size, structured_tool=t.name)
        return model, text

    object.__setattr__(t, "fn", measured)  # ToolDef is frozen: the one sanctioned poke, tests only


def pytest_configure(config: pytest.Config) -> None:
    from tao_bevfusion import api, server

    for t in api.TOOLS:
        _wrap(t)
    inner = server._result

    def result(model: Any, text: str, extra: Any = None) -> Any:
        out = inner(model, text, extra)
        size = sum(len(getattr(c, "text", "") or "") for c in out.content)
        if size > LARGEST["mcp_text"]:
            LARGEST.update(mcp_text=size, mcp_test=_CURRENT["test"])
        return out

    server._result = result  # type: ignore[assignment]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    _CURRENT["test"] = item.nodeid
    yield


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not LARGEST["calls"]:
        return
    terminalreporter.write_line(
        f"largest tool result over {LARGEST['calls']} calls: text {LARGEST['text']} chars ({LARGEST['text_tool']}, "
        f"{LARGEST['text_test']}); MCP text {LARGEST['mcp_text']} chars; structured JSON {LARGEST['structured']} "
        f"bytes ({LARGEST['structured_tool']}); error text {LARGEST['error']} chars ({LARGEST['error_tool']}, "
        f"{LARGEST['error_test']})")
    out = Path(os.environ.get("TAO_BEVFUSION_RESULT_SIZES", ".pytest-results/result_sizes.json"))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(LARGEST, indent=2))
    except OSError:
        pass
