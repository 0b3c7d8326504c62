"""Appending a container's log stream to the job log: de-duplicated across syncs, every record bounded.

Docker sends one frame per log entry, `<RFC3339Nano stamp> <body>`. A line longer than 16 KB arrives as
several entries with the *same* stamp (partial messages) and TAO prints most of its output as one
`\\r`-separated stretch without a newline, so an entry is identified by (second, nanosecond, how many
entries with that stamp came before it), and each entry is handled on its own: one 64 MB line costs linear
time and memory of one entry. A record (text between `\\r`/`\\n`) over RECORD_LIMIT bytes keeps its head
and a marker; the rest of it is dropped up to its next `\\r` or `\\n`.
"""

import os
import re
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

RECORD_LIMIT = 1 << 20
BREAK = re.compile(rb"[\r\n]")
MARKER = b" [... rest of an overlong line (over 1 MB) cut ...]"
Key = tuple[int, int, int]


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


class LogWindow:
    """De-duplication state of one sync: entry keys written in the boundary second by the previous sync, and
    the keys of the newest second seen now (memory stays bounded by one second of output)."""

    def __init__(self, boundary: int, prior: set[Key], cap: RecordCap) -> None:
        self.boundary, self.prior, self.cap = boundary, prior, cap
        self.top, self.top_seen = boundary, set(prior)
        self.counts: dict[tuple[int, int], int] = {}

    def append(self, out: BinaryIO, frame: bytes) -> None:
        stamp, _, body = frame.partition(b" ")
        try:
            ts = parse_stamp(stamp.decode())
        except (ValueError, UnicodeDecodeError):
            out.write(self.cap.filter(frame))
            return
        nth = self.counts.get(ts, 0)
        self.counts[ts] = nth + 1
        key = (ts[0], ts[1], nth)
        if ts[0] < self.boundary or key in self.prior:
            return
        out.write(self.cap.filter(body))
        if ts[0] > self.top:
            self.top, self.top_seen = ts[0], {key}
        elif ts[0] == self.top:
            self.top_seen.add(key)


def stored_keys(seen: list[list[int]]) -> set[Key]:
    """Keys from the sync state file (an older file stored (second, nanosecond) pairs: entry 0)."""
    return {(int(k[0]), int(k[1]), int(k[2]) if len(k) > 2 else 0) for k in seen}
