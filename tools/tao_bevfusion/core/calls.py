"""Suggested calls and foreign text, in forms an agent can trust.

A suggested call (next_steps, next_call, suggested_calls) is written as `tool({...})`: the tool's name
and its arguments JSON-encoded, so every entry parses as exactly one call whatever a path, a job id or a
user's words contain (a quote in a data root cannot end the string and start a second call).

Text that came from a container or a dataset (status.json messages, log lines) is data, not the tool's
voice: `quoted` caps it, strips control characters and wraps it in a JSON string marked as the job's.
"""

import json
import re
from typing import Any

CALL = re.compile(r"^([a-z][a-z_]{1,40})\((\{.*\})\)$", re.S)
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
TOOL_NAMES = (
    "route_request",
    "resolve_automl_policy",
    "check_dataset",
    "build_spec",
    "resolve_parent_checkpoint",
    "run_action",
    "get_job",
    "get_job_logs",
    "list_jobs",
    "cancel_job",
)


def call_text(tool: str, args: dict[str, Any]) -> str:
    """`tool({"arg": value, ...})`: one call, arguments JSON-encoded (None values left out)."""
    assert tool in TOOL_NAMES, tool
    kept = {k: v for k, v in args.items() if v is not None}
    return f"{tool}({json.dumps(kept, ensure_ascii=True, separators=(', ', ': '))})"


def parse_call(text: str) -> tuple[str, dict[str, Any]]:
    """The (tool, arguments) of a suggested call; ValueError when it is not exactly one call."""
    m = CALL.match(text.strip())
    if not m or m.group(1) not in TOOL_NAMES:
        raise ValueError(f"not a single tool call: {text[:120]!r}")
    args = json.loads(m.group(2))
    if not isinstance(args, dict):
        raise ValueError(f"arguments are not an object: {text[:120]!r}")
    return m.group(1), args


def clean(text: str, limit: int = 300) -> str:
    """One line of foreign text: control characters removed, whitespace collapsed, capped."""
    flat = " ".join(CONTROL.sub(" ", str(text)).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07?")
LINE_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def clean_lines(text: str) -> str:
    """Many lines of foreign text: newlines and tabs kept, escape sequences and other control characters gone."""
    return LINE_CONTROL.sub("", ANSI.sub("", text.replace("\r\n", "\n").replace("\r", "\n")))


def quoted(text: str, limit: int = 300, source: str = "job") -> str:
    """Foreign text as data: `<source> said: "..."` (JSON string, capped, control-free)."""
    return f"{source} said: {json.dumps(clean(text, limit), ensure_ascii=True)}"


def cause_line(exc: BaseException, limit: int = 200) -> str:
    """`Type: first line of the message`, cleaned and capped (never a traceback)."""
    message = (
        str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    )  # KeyError str() is a repr
    first = next((line for line in message.splitlines() if line.strip()), "")
    return clean(f"{type(exc).__name__}: {first}" if first else type(exc).__name__, limit)
