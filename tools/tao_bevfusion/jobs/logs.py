"""get_job_logs: pages of a job's combined log (tail, by offset, or by regex), secrets redacted.

A user regex runs on the `regex` engine with a time budget (GREP_SECONDS for the whole call, passed as the
per-search timeout) and releases the GIL while it matches, so '(a+)+$' costs at most the budget and never
stalls other calls. Without an offset, grep scans the whole log newest-first in CHUNK pieces; the page says
which bytes were searched and why it stopped.
"""

import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from tao_bevfusion.core.calls import call_text
from tao_bevfusion.core.errors import InputError, problem
from tao_bevfusion.core.limits import TEXT_LIMIT
from tao_bevfusion.core.lines import pieces
from tao_bevfusion.core.redact import redact
from tao_bevfusion.jobs.context import AppContext, app_context
from tao_bevfusion.jobs.engine import refresh
from tao_bevfusion.jobs.secrets import job_secrets
from tao_bevfusion.jobs.store import check_job_id

if TYPE_CHECKING:
    import regex

GREP_SECONDS = 2.0
CHUNK = 1 << 20
TAIL_WINDOW = 256 * 1024
LINE_CHARS = 1000
MAX_MATCHES = 500
PIECE = 64 * 1024  # a longer line is searched in slices of this size
LINES = re.compile(rb"[\r\n]+")
ONE_LINE = re.compile(rb"[^\r\n]+")


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


def _compile(grep: str) -> "regex.Pattern[bytes]":
    import regex  # only a grep needs it; kept off server start-up

    try:
        return regex.compile(grep.encode())
    except (regex.error, ValueError) as exc:
        raise InputError(
            problem("grep", f"not a valid regex: {exc}", "pass e.g. 'Error|Traceback'")
        ) from exc


def _read(path: Path, start: int, length: int) -> bytes:
    try:
        with open(path, "rb") as fh:
            fh.seek(start)
            return fh.read(max(0, length))
    except OSError:
        return b""


class _Grep:
    """Matching lines, searched within a time budget; `stopped` says why a search ended early."""

    def __init__(self, rx: "regex.Pattern[bytes]", want: int) -> None:
        self.rx, self.want = rx, want
        self.deadline = time.monotonic() + GREP_SECONDS
        self.found: list[bytes] = []
        self.stopped: str | None = None

    def expired(self) -> bool:
        if time.monotonic() < self.deadline:
            return False
        self.stopped = (
            self.stopped or f"the {GREP_SECONDS:g} s search budget ran out (simplify the regex)"
        )
        return True

    def feed(self, lines: list[bytes]) -> bool:
        """Search lines in the given order; False once the scan must stop."""
        return all(self.one(line) for line in lines)

    def one(self, line: bytes) -> bool:
        left = self.deadline - time.monotonic()
        try:
            hit = self.rx.search(line, timeout=left, concurrent=True) if left > 0 else None
        except TimeoutError:
            hit = None
        if hit is None and time.monotonic() >= self.deadline:
            self.stopped = f"the {GREP_SECONDS:g} s search budget ran out (simplify the regex)"
            return False
        if hit:
            at = max(0, hit.start() - LINE_CHARS // 4)  # a long line is shown around its match
            self.found.append(line if len(line) <= LINE_CHARS else line[at : at + LINE_CHARS])
            if len(self.found) >= self.want:
                self.stopped = f"{self.want} matching lines found"
                return False
        return True


def _grep_backward(path: Path, size: int, g: _Grep) -> int:
    """Newest first, CHUNK by CHUNK; returns the offset down to which the log was searched. A line longer
    than PIECE is searched in PIECE slices, and the budget is checked per chunk, so one 64 MB line costs
    linear time."""
    pos, carry = size, b""
    while pos > 0:
        if g.expired():
            break
        start = max(0, pos - CHUNK)
        lines = LINES.split(_read(path, start, pos - start) + carry)
        carry = (
            lines.pop(0) if start > 0 else b""
        )  # the first piece may be the tail of an earlier line
        if (
            len(carry) > PIECE
        ):  # an overlong line: search its newest slices now, keep one for the next chunk
            lines[:0] = [
                carry[-PIECE * k - PIECE : len(carry) - PIECE * k]
                for k in reversed(range((len(carry) - 1) // PIECE))
            ]
            carry = carry[: len(carry) - PIECE * ((len(carry) - 1) // PIECE)]
        if not g.feed(_sliced(reversed(lines), newest_first=True)):
            g.found.reverse()
            return start + len(carry)
        pos = start
    g.found.reverse()
    return pos + len(carry)


def _sliced(lines: Iterable[bytes], newest_first: bool = False) -> list[bytes]:
    out: list[bytes] = []
    for line in lines:
        if line.strip():
            cut = pieces(line, PIECE)
            out.extend(reversed(cut) if newest_first else cut)
    return out


def _grep_forward(path: Path, start: int, size: int, g: _Grep) -> int:
    """From `start`, whole lines only (an overlong one in PIECE slices); returns where the next page starts."""
    pos = start
    while pos < size and not g.expired():
        data = _read(path, pos, min(CHUNK, size - pos))
        if not data:
            break
        cut = max(data.rfind(b"\n"), data.rfind(b"\r")) + 1 if pos + len(data) < size else len(data)
        if cut == 0:
            cut = len(data)  # one line longer than CHUNK: search it in pieces
        for m in ONE_LINE.finditer(data, 0, cut):
            for piece in _sliced([m.group()]):
                if not g.one(piece):
                    return pos + m.end()
        pos += cut
    return pos


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
            job_id, path, size, _compile(grep), offset, tail_lines, max_bytes, secrets, running
        )
    if offset is not None:
        start = max(0, min(offset, size))
        data = _read(path, start, max_bytes)
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
    lines = [ln for ln in LINES.split(_read(path, start, size - start)) if ln.strip()]
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
    rx: "regex.Pattern[bytes]",
    offset: int | None,
    tail_lines: int | None,
    max_bytes: int,
    secrets: list[str],
    running: str,
) -> LogPage:
    g = _Grep(rx, min(tail_lines or 50, MAX_MATCHES) if offset is None else MAX_MATCHES)
    if offset is None:
        searched_from = _grep_backward(path, size, g)
        text, dropped = _page(g.found, secrets, max_bytes, newest=True)
        scope = (
            "the whole log"
            if searched_from == 0
            else f"bytes {searched_from}-{size} (newest first)"
        )
        hint = f"searched {scope}" + (f"; stopped: {g.stopped}" if g.stopped else "")
        if searched_from > 0:
            hint += f"; earlier lines: get_job_logs(job_id='{job_id}', grep=..., offset=0) searches forward"
        return LogPage(
            text="\n".join(text),
            offset=searched_from,
            next_offset=size,
            size=size,
            truncated=dropped > 0 or searched_from > 0,
            hint=hint + running,
        )
    start = max(0, min(offset, size))
    next_offset = _grep_forward(path, start, size, g)
    text, dropped = _page(g.found, secrets, max_bytes, newest=False)
    hint = f"searched bytes {start}-{next_offset} of {size}" + (
        f"; stopped: {g.stopped}" if g.stopped else ""
    )
    if next_offset < size:
        hint += f"; more: get_job_logs(job_id='{job_id}', grep=..., offset={next_offset})"
    return LogPage(
        text="\n".join(text),
        offset=start,
        next_offset=next_offset,
        size=size,
        truncated=dropped > 0 or next_offset < size,
        hint=hint + running,
    )
