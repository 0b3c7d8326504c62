"""Appending a container's log stream to the job log: de-duplicated across syncs, every record bounded.

Docker sends one frame per log entry, `<RFC3339Nano stamp> <body>`. A line longer than 16 KB arrives as
several entries with the *same* stamp (partial messages) and TAO prints most of its output as one
`\\r`-separated stretch without a newline, so an entry is identified by (second, nanosecond, how many
entries with that stamp came before it), and each entry is handled on its own: one 64 MB line costs linear
time and memory of one entry. A record (text between `\\r`/`\\n`) over RECORD_LIMIT bytes keeps its head
and a marker; the rest of it is dropped up to its next `\\r` or `\\n`.

stdout and stderr have separate copiers, so the other stream's entries can come between a long line's partials
(the launcher's stderr footer while dockerd still drains a 16 MB stdout line): a record's cap belongs to its
line, never to the byte stream, and a line still unfinished at a sync is kept (its stamp, entries read, cap) in
the sync state, so the next sync asks from its second and neither re-opens nor loses the rest of it.
"""

import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

RECORD_LIMIT = 1 << 20
BREAK = re.compile(rb"[\r\n]")
MARKER = b" [... rest of an overlong line (over 1 MB) cut ...]"
Key = tuple[int, int, int]
Stamp = tuple[int, int]
MAX_OPEN = 2  # unfinished lines kept: one per stream (stdout, stderr)


def parse_stamp(stamp: str) -> tuple[int, int]:
    """RFC3339Nano (trailing zeros trimmed by Docker) -> (unix seconds, nanoseconds)."""
    main, _, frac = stamp.rstrip("Z").partition(".")
    secs = int(datetime.fromisoformat(main + "+00:00").timestamp())
    return secs, int((frac or "0").ljust(9, "0")[:9])


def open_record_length(log: Path, limit: int = RECORD_LIMIT) -> int:
    """Bytes of the log's last, unfinished record (more than `limit` once it was cut)."""
    span = limit + len(MARKER) + 1
    try:
        with open(log, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - span))
            tail = fh.read(span)
    except OSError:
        return 0
    last = max(tail.rfind(b"\n"), tail.rfind(b"\r"))
    if last < 0 and size > len(tail):
        return limit + 1
    return len(tail) - last - 1


class RecordCap:
    """Cut records longer than `limit` bytes; `run` is the length of the record being written."""

    def __init__(self, run: int, limit: int = RECORD_LIMIT) -> None:
        self.run, self.limit = run, limit

    def filter(self, body: bytes) -> bytes:
        out, pos = [], 0
        while pos < len(body):
            brk = BREAK.search(body, pos)
            end = brk.start() if brk else len(body)
            room = self.limit - self.run  # negative once this record was cut
            if end > pos and room >= 0:
                out.append(body[pos : min(end, pos + room)])
                self.run += min(end - pos, room)
                if end - pos > room:
                    out.append(MARKER)
                    self.run = self.limit + len(MARKER)
            if brk is None:
                break
            out.append(brk.group())
            self.run, pos = 0, brk.end()
        return b"".join(out)


@dataclass
class OpenLine:
    """A line whose entries so far were all partial: how many were read (its de-duplication) and its cap."""

    count: int
    cap: RecordCap


class LogWindow:
    """De-duplication and record state of one sync: entry keys written in the boundary second by the previous
    sync, the keys of the newest second seen now (memory stays bounded by one second of output), and the lines
    still unfinished (`lines`, by stamp; `tail`: the one whose bytes end the log, None when it ends at a line
    break). `cap` measures the log's last record when the state predates `lines` (the next line continues it).
    """

    def __init__(self, boundary: int, prior: set[Key], cap: RecordCap, lines: dict[Stamp, OpenLine] | None = None,
                 tail: Stamp | None = None) -> None:
        self.boundary, self.prior, self.cap = boundary, prior, cap
        self.top, self.top_seen = boundary, set(prior)
        self.counts: dict[Stamp, int] = {}
        self.lines, self.tail = dict(lines or {}), tail

    @property
    def since(self) -> int:
        """The second to ask the engine from: the boundary, or an unfinished line's older stamp (its partials
        keep it, however late they come)."""
        return min([self.boundary, *(s for s, _ in self.lines)])

    def append(self, out: BinaryIO, frame: bytes) -> None:
        stamp, _, body = frame.partition(b" ")
        try:
            ts = parse_stamp(stamp.decode())
        except (ValueError, UnicodeDecodeError):
            line = self.lines.get(self.tail) if self.tail else None
            out.write((line.cap if line else self.cap).filter(frame))
            return
        if ts[0] < self.boundary and ts not in self.lines:
            return
        nth = self.counts.get(ts, 0)
        self.counts[ts] = nth + 1
        key = (ts[0], ts[1], nth)
        line = self.lines.get(ts)
        if (nth < line.count) if line else key in self.prior:
            return
        self._write(out, ts, body, line, nth + 1)
        if ts[0] > self.top:
            self.top, self.top_seen = ts[0], {key}
        elif ts[0] == self.top:
            self.top_seen.add(key)

    def _write(self, out: BinaryIO, ts: Stamp, body: bytes, line: OpenLine | None, count: int) -> None:
        """Docker cuts a line over 16 KB into partial entries that all carry its first one's stamp, and the other
        stream's entries may come between them: each line keeps its own record cap, an entry of another line
        than the one the log ends inside starts a line of its own, and a line resumed there drops the break
        that line already made for it (a cut line leaves no empty line)."""
        if line is None and self.tail is None and self.cap.run:  # a state saved before `lines`: the log ends
            line, self.tail = OpenLine(0, self.cap), ts  # inside a record, and the next line continues it
        cap = line.cap if line else RecordCap(0, self.cap.limit)
        chunk = cap.filter(body)
        if line is not None and self.tail != ts and chunk[:1] in (b"\r", b"\n"):
            chunk = chunk[1:]
        if chunk and self.tail not in (None, ts):
            out.write(b"\n")
        out.write(chunk)
        done = body.endswith(b"\n")  # a partial entry never holds a newline
        if chunk:
            self.tail = None if done else ts
        if done:
            self.lines.pop(ts, None)
            self.cap = RecordCap(0, cap.limit)
            return
        self.lines[ts] = OpenLine(count, cap)
        if len(self.lines) > MAX_OPEN:  # an older one's stream ended mid-line (its container stopped)
            del self.lines[min(k for k in self.lines if k != self.tail)]

    def state(self) -> dict[str, Any]:
        """What the next sync resumes from (LogWindow.resume)."""
        return {"boundary": self.top, "seen": sorted(self.top_seen), "tail": self.tail,
                "open": [[s, ns, line.count, line.cap.run] for (s, ns), line in sorted(self.lines.items())]}

    @classmethod
    def resume(cls, state: dict[str, Any], log: Path, limit: int = RECORD_LIMIT) -> "LogWindow":
        """The window after the sync that saved `state` (no or a broken state: from the engine's first entry)."""
        try:
            boundary, prior = int(state["boundary"]), stored_keys(state["seen"])
        except (KeyError, TypeError, ValueError):
            boundary, prior = 0, set()
        try:
            lines = {(int(s), int(ns)): OpenLine(int(n), RecordCap(int(run), limit)) for s, ns, n, run in state["open"]}
            tail = (int(state["tail"][0]), int(state["tail"][1])) if state["tail"] else None
        except (KeyError, TypeError, ValueError):  # saved before unfinished lines were: measure the log's end
            return cls(boundary, prior, RecordCap(open_record_length(log, limit), limit))
        return cls(boundary, prior, RecordCap(0, limit), lines, tail)


def stored_keys(seen: list[list[int]]) -> set[Key]:
    """Keys from the sync state file (an older file stored (second, nanosecond) pairs: entry 0)."""
    return {(int(k[0]), int(k[1]), int(k[2]) if len(k) > 2 else 0) for k in seen}
