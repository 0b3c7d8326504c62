"""An unexpected exception in a tool or a resource, said to the agent: its type, one line of cause and the
next call. The traceback goes to the server log only (the agent cannot act on it and it may hold paths)."""

import re
from typing import Any

from tao_bevfusion.core.calls import call_text, cause_line

SECRETISH = re.compile(r"key|env|secret|token|password|backend_options", re.I)
PICTURE_FIELDS = ("include_curve", "include_pictures", "frames", "compare")


def next_call(tool: str, args: dict[str, Any]) -> str:
    """A call that avoids the part that crashed, or that shows what happened."""
    asked = {
        k: v for k, v in args.items() if v not in (None, False, [], {}) and not SECRETISH.search(k)
    }
    if any(k in asked for k in PICTURE_FIELDS):
        plain = {k: v for k, v in asked.items() if k not in PICTURE_FIELDS}
        return call_text(tool, plain)  # the same call without pictures
    if "job_id" in asked and tool != "get_job":
        return call_text("get_job", {"job_id": asked["job_id"]})
    if tool == "run_action":
        return call_text("list_jobs", {"limit": 5})  # did anything launch before it failed?
    if "job_id" in asked:
        return call_text("get_job_logs", {"job_id": asked["job_id"], "tail_lines": 50})
    return call_text(tool, asked)


def tool_crash_text(tool: str, args: dict[str, Any], exc: BaseException) -> str:
    return (
        f"internal error in {tool}: {cause_line(exc)} (a bug, not your input; the traceback is in the "
        f"server log)\nnext: {next_call(tool, args)}"
    )


def resource_crash_text(uri: str, exc: BaseException, job_id: str | None) -> str:
    nxt = (
        call_text("get_job", {"job_id": job_id}) if job_id else call_text("list_jobs", {"limit": 5})
    )
    return f"internal error reading {uri}: {cause_line(exc)} (traceback in the server log)\nnext: {nxt}"
