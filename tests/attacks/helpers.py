"""Attack drivers: only the public surfaces (MCP in-memory client, the CLI, tao_bevfusion.api.call)."""

import contextlib
import io
import json
import time
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from tao_bevfusion import api
from tao_bevfusion.cli import main as cli_main
from tao_bevfusion.core.errors import InputError
from tao_bevfusion.server import mcp

FAST = {"num_epochs": 2, "batch_size": 1}


def call(name: str, **args: Any) -> Any:
    """tao_bevfusion.api.call returning the structured result model."""
    return api.call(name, args)[0]


def refused(name: str, **args: Any) -> str:
    """Call a tool that must refuse; return the rendered error text (fails the test if it did not refuse)."""
    try:
        api.call(name, args)
    except InputError as exc:
        return exc.render()
    raise AssertionError(f"{name} accepted {list(args)}")


def mcp_call(name: str, args: dict[str, Any], timeout: float = 60) -> Any:
    async def go() -> Any:
        async with Client(mcp) as c:
            with anyio.fail_after(timeout):
                return await c.call_tool(name, args)
    return anyio.run(go)


def mcp_resource(uri: str, timeout: float = 60) -> Any:
    async def go() -> Any:
        async with Client(mcp) as c:
            with anyio.fail_after(timeout):
                return await c.read_resource(uri)
    return anyio.run(go)


def cli(*argv: str) -> tuple[int, str, str]:
    """Run the CLI in-process; an uncaught exception is returned as rc 99 with its text (a raw traceback)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = cli_main(list(argv))
        except SystemExit as exc:
            rc = int(exc.code or 0) if not isinstance(exc.code, str) else 2
        except Exception as exc:
            return 99, out.getvalue(), f"Traceback: {type(exc).__name__}: {exc}"
    return rc, out.getvalue(), err.getvalue()


def launch(action: str, root: Path, **kw: Any) -> Any:
    kw.setdefault("gpus", [])
    if action == "train":
        kw.setdefault("automl_policy", "off")
    return call("run_action", action=action, data_root=str(root), **kw)


def finish(job_id: str, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        s = call("get_job", job_id=job_id)
        if s.state not in ("pending", "running") or time.monotonic() > deadline:
            return s
        time.sleep(0.5)


def wait_until(pred: Any, timeout: float = 60, step: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(step)
    raise AssertionError("condition not reached in time")


def text_of(result: Any) -> str:
    """All text an MCP result carries (content + structured), for leak checks."""
    parts = [getattr(c, "text", "") for c in result.content]
    return "\n".join(parts) + json.dumps(result.structured_content or {})
