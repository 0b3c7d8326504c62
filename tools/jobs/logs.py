"""get_job_logs: pages of a job's combined log (tail, by offset, or by regex), secrets redacted."""

import re

from pydantic import BaseModel, Field

from tools.errors import InputError, problem
from tools.jobs.engine import refresh
from tools.jobs.store import check_job_id
from tools.jobs.summary import job_secrets, redact
from tools.settings import AppContext, app_context


class LogPage(BaseModel):
    text: str = Field(description="Log lines (progress records split on \\r), secrets redacted.")
    offset: int = Field(description="Byte offset where `text` starts.")
    next_offset: int = Field(description="Pass as offset to read on from here.")
    size: int = Field(description="Current log size in bytes.")
    truncated: bool = Field(description="True when more text matched or exists than was returned.")
    hint: str = Field(description="How to read the next page, or that the log ended.")


def get_job_logs(job_id: str, tail_lines: int | None = None, offset: int | None = None, grep: str | None = None,
                 max_bytes: int = 4096, ctx: AppContext | None = None) -> LogPage:
    """Page the job log: the tail (default 50 lines), from a byte offset, or lines matching a regex."""
    ctx = ctx or app_context()
    job = refresh(ctx.store.get(check_job_id(job_id)), ctx)
    path = job.files(ctx.settings.home).log
    size = path.stat().st_size if path.exists() else 0
    max_bytes = max(256, min(max_bytes, 6000))
    rx = None
    if grep:
        try:
            rx = re.compile(grep.encode())
        except re.error as exc:
            raise InputError(problem("grep", f"not a valid regex: {exc}", "pass e.g. 'Error|Traceback'")) from exc
    if offset is not None:
        start = max(0, min(offset, size))
    elif rx is None:
        start = max(0, size - 256 * 1024)
    else:
        start = max(0, size - 64 * 1024 * 1024)
    with open(path, "rb") if path.exists() else open("/dev/null", "rb") as fh:
        fh.seek(start)
        data = fh.read(max_bytes * 64 if offset is None else max_bytes)
    lines = [ln for ln in re.split(rb"[\r\n]+", data) if ln.strip()]
    if rx is not None:
        lines = [ln for ln in lines if rx.search(ln)]
    if offset is None:
        lines = lines[-(tail_lines or 50):]
    text, used = [], 0
    for ln in reversed(lines) if offset is None else lines:
        piece = ln.decode(errors="replace")[:1000]
        if used + len(piece) + 1 > max_bytes:
            break
        text.append(piece)
        used += len(piece) + 1
    if offset is None:
        text.reverse()
    truncated = len(text) < len(lines) or (offset is not None and start + len(data) < size)
    next_offset = start + len(data) if offset is not None else size
    hint = (f"more: get_job_logs(job_id='{job_id}', offset={next_offset})" if next_offset < size
            else "end of log" + ("; the job is still running" if not job.terminal else ""))
    return LogPage(text=redact("\n".join(text), job_secrets(job)), offset=start, next_offset=next_offset, size=size,
                   truncated=truncated,
                   hint=hint)
