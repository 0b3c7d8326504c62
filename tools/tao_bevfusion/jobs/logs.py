"""get_job_logs: pages of a job's combined log (tail, by offset, or by regex), secrets redacted.

A user regex runs in a child process (jobs/logsearch.py) that is killed when GREP_SECONDS are spent, so
'(a+)+$' costs at most the budget, on any machine load, and never stalls other calls. Without an offset, grep
scans the whole log newest-first; the page says which bytes were searched and why it stopped.
"""

import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from pydantic import BaseModel, Field

from tao_bevfusion.core.calls import call_text
from tao_bevfusion.core.errors import InputError, problem
from tao_bevfusion.core.limits import TEXT_LIMIT
from tao_bevfusion.core.redact import redact
from tao_bevfusion.jobs.context import AppContext, app_context
from tao_bevfusion.jobs.engine import refresh
from tao_bevfusion.jobs.logsearch import LINE_CHARS, Batch, Request, read_range
from tao_bevfusion.jobs.secrets import job_secrets
from tao_bevfusion.jobs.store import check_job_id

GREP_SECONDS = 2.0
TAIL_WINDOW = 256 * 1024
MAX_MATCHES = 500
LINES = re.compile(rb"[\r\n]+")


class LogPage(BaseModel):
    text: str = Field(description="Log lines (progress records split on \\r), secrets redacted.")
    offset: int = Field(
        description="Byte offset where `text` starts (grep: where the search started)."
    )
    next_offset: int = Field(description="Pass as offset to read on from here.")
    size: int = Field(description="Current log size in bytes.")
    truncated: bool = Field(description="True when more text matched or exists than was returned.")
    hint: str = Field(
        description="How to read the next page, how far a grep searched, or that the log ended."
    )


def _check_pattern(grep: str) -> None:
    try:
        re.compile(grep.encode())
    except (re.error, ValueError) as exc:
        raise InputError(
            problem("grep", f"not a valid regex: {exc}", "pass e.g. 'Error|Traceback'")
        ) from exc


def _search_child_env() -> dict[str, str]:
    """The child finds this package where the server found it (installed or from a source tree)."""
    import tao_bevfusion

    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(Path(tao_bevfusion.__file__).resolve().parents[1])}


def _search(req: Request) -> tuple[list[bytes], int, str | None]:
    """Run the search child for at most GREP_SECONDS. Returns the matching lines in log order, how far the
    search got (backward: down to, forward: up to) and why it stopped early (None: it searched everything)."""
    proc = subprocess.Popen(
        [sys.executable, "-P", "-s", "-m", "tao_bevfusion.jobs.logsearch"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        env=_search_child_env(), cwd="/",
    )
    stopped = None
    try:
        out, _ = proc.communicate(json.dumps(asdict(req)).encode(), timeout=GREP_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        stopped = f"the {GREP_SECONDS:g} s search budget ran out (simplify the regex)"
    found: list[list[bytes]] = []
    at = req.size if req.backward else req.start
    for record in out.splitlines():
        try:
            batch = Batch(**json.loads(record))
        except (ValueError, TypeError):
            break  # the line being written when the child was killed
        found.append([h.encode("latin-1") for h in batch.hits])
        at, stopped = batch.at, batch.stopped or stopped
    if proc.returncode not in (0, -signal.SIGKILL) and stopped is None:
        stopped = f"the search process failed (exit {proc.returncode})"
    ordered = reversed(found) if req.backward else found
    return [hit for hits in ordered for hit in hits], at, stopped


def _page(
    lines: list[bytes], secrets: list[str], max_bytes: int, newest: bool
) -> tuple[list[str], int]:
    """Redact first, then cut each line and fit the page; newest=True keeps the last lines."""
    text, used = [], 0
    for ln in reversed(lines) if newest else lines:
        piece = redact(ln.decode(errors="replace"), secrets)[:LINE_CHARS]
        if used + len(piece) + 1 > max_bytes:
            break
        text.append(piece)
        used += len(piece) + 1
    if newest:
        text.reverse()
    return text, len(lines) - len(text)


def get_job_logs(
    job_id: str,
    tail_lines: int | None = None,
    offset: int | None = None,
    grep: str | None = None,
    max_bytes: int = 4096,
    ctx: AppContext | None = None,
) -> LogPage:
    """Page the job log: the tail (default 50 lines), from a byte offset, or lines matching a regex."""
    ctx = ctx or app_context()
    job = refresh(ctx.store.get(check_job_id(job_id)), ctx)
    path = job.files(ctx.settings.home).log
    try:
        size = path.stat().st_size
    except OSError:
        size = 0
    max_bytes = max(256, min(max_bytes, TEXT_LIMIT))
    secrets = job_secrets(job)
    running = "" if job.terminal else "; the job is still running"
    if grep:
        return _grep_page(
            job_id, path, size, grep, offset, tail_lines, max_bytes, secrets, running
        )
    if offset is not None:
        start = max(0, min(offset, size))
        data = read_range(path, start, max_bytes)
        text, _ = _page(
            [ln for ln in LINES.split(data) if ln.strip()], secrets, max_bytes, newest=False
        )
        next_offset = start + len(data)
        more = call_text("get_job_logs", {"job_id": job_id, "offset": next_offset})
        hint = f"more: {more}" if next_offset < size else "end of log" + running
        return LogPage(
            text="\n".join(text),
            offset=start,
            next_offset=next_offset,
            size=size,
            truncated=next_offset < size,
            hint=hint,
        )
    start = max(0, size - TAIL_WINDOW)
    lines = [ln for ln in LINES.split(read_range(path, start, size - start)) if ln.strip()]
    if start > 0 and lines:
        lines.pop(0)  # a partial line at the window's edge
    wanted = lines[-(tail_lines or 50) :]
    text, dropped = _page(wanted, secrets, max_bytes, newest=True)
    return LogPage(
        text="\n".join(text),
        offset=start,
        next_offset=size,
        size=size,
        truncated=dropped > 0 or start > 0,
        hint="end of log" + running,
    )


def _grep_page(
    job_id: str,
    path: Path,
    size: int,
    grep: str,
    offset: int | None,
    tail_lines: int | None,
    max_bytes: int,
    secrets: list[str],
    running: str,
) -> LogPage:
    _check_pattern(grep)
    backward = offset is None
    start = 0 if offset is None else max(0, min(offset, size))
    want = min(tail_lines or 50, MAX_MATCHES) if backward else MAX_MATCHES
    found, at, stopped = _search(Request(str(path), grep, start, size, backward, want))
    text, dropped = _page(found, secrets, max_bytes, newest=backward)
    said = f"; stopped: {stopped}" if stopped else ""
    if backward:
        scope = "the whole log" if at == 0 else f"bytes {at}-{size} (newest first)"
        hint = f"searched {scope}{said}"
        if at > 0:
            earlier = call_text("get_job_logs", {"job_id": job_id, "grep": grep, "offset": 0})
            hint += f"; earlier lines: {earlier} searches forward"
        return LogPage(text="\n".join(text), offset=at, next_offset=size, size=size,
                       truncated=dropped > 0 or at > 0, hint=hint + running)
    hint = f"searched bytes {start}-{at} of {size}{said}"
    if at < size:
        hint += "; more: " + call_text("get_job_logs", {"job_id": job_id, "grep": grep, "offset": at})
    return LogPage(text="\n".join(text), offset=start, next_offset=at, size=size,
                   truncated=dropped > 0 or at < size, hint=hint + running)
