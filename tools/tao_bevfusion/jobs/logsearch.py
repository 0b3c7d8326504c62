"""A user's regex over a job log, in a child process the caller kills at its deadline (issue 17, item 7).

No regex engine stops a catastrophic pattern on time (a per-search timeout overshot 2x on a loaded machine), so
the search runs here, in `python -m tao_bevfusion.jobs.logsearch`, and get_job_logs kills it when the budget
is spent. Whatever it found before that is kept: it writes one JSON line per matching line and per chunk, each
saying how far the search got, so a killed search still answers with a consistent page.

Protocol: a Request as JSON on stdin; Batch records as JSON lines on stdout (bytes carried as latin-1 text).
Backward search goes newest first, CHUNK by CHUNK; forward search starts at `start` and ends on whole lines.
A line longer than PIECE is searched in PIECE slices, so one 64 MB line costs linear time and bounded memory.
"""

import itertools
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

CHUNK = 1 << 20
PIECE = 64 * 1024
LINE_CHARS = 1000  # bytes of a matching line kept (around the match when the line is longer)
ONE_LINE = re.compile(rb"[^\r\n]+")


@dataclass(frozen=True)
class Request:
    path: str
    pattern: str
    start: int  # forward: where to begin
    size: int  # the log size the caller saw; nothing past it is read
    backward: bool
    want: int  # stop after this many matching lines


@dataclass
class Batch:
    """Matches from one stretch of the log; `at` is how far the search got (backward: down to, forward: up to)."""

    at: int
    hits: list[str] = field(default_factory=list)
    stopped: str | None = None


class _Search:
    def __init__(self, req: Request) -> None:
        self.req = req
        self.rx = re.compile(req.pattern.encode())
        self.found = 0

    def hit(self, line: bytes) -> bytes | None:
        """The line (around its match when long) if it matches, else None."""
        m = self.rx.search(line)
        if m is None:
            return None
        self.found += 1
        at = max(0, m.start() - LINE_CHARS // 4)
        return line if len(line) <= LINE_CHARS else line[at : at + LINE_CHARS]

    def batch(self, at: int, hit: bytes | None = None) -> Batch:
        enough = self.found >= self.req.want
        return Batch(at=at, hits=[hit.decode("latin-1")] if hit is not None else [],
                     stopped=f"{self.req.want} matching lines found" if enough else None)


def read_range(path: Path, start: int, length: int) -> bytes:
    """Up to `length` bytes of `path` from `start` (b"" when it cannot be read)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(start)
            return fh.read(max(0, length))
    except OSError:
        return b""


def _slices(start: int, line: bytes) -> list[tuple[int, bytes]]:
    """(file offset, slice) of a line that starts at file offset `start`, oldest first, cut at every multiple
    of PIECE: the same slices whichever way and in whatever chunks the log is read. Blank slices are left out."""
    cuts = [0, *range(-start % PIECE or PIECE, len(line), PIECE), len(line)]
    return [(start + a, line[a:b]) for a, b in itertools.pairwise(cuts) if line[a:b].strip()]


def _chunk_newest_first(data: bytes, base: int, keep_first: bool) -> tuple[bytes, list[tuple[int, bytes]]]:
    """The slices of `data` (read at file offset `base`) newest first, and the carry: when keep_first, the first
    line may continue an earlier one, so its bytes up to the next multiple of PIECE wait for the next chunk."""
    lines = [(base + m.start(), m.group()) for m in ONE_LINE.finditer(data)]
    carry = b""
    if keep_first and lines and lines[0][0] == base:
        _, first = lines.pop(0)
        carry = first[: -base % PIECE]
        if len(first) > len(carry):
            lines.insert(0, (base + len(carry), first[len(carry) :]))
    return carry, [piece for start, line in reversed(lines) for piece in reversed(_slices(start, line))]


def search_backward(s: _Search) -> Iterator[Batch]:
    """Newest first: a batch per matching line (at = where that slice starts) and per chunk."""
    path, pos, carry = Path(s.req.path), s.req.size, b""
    while pos > 0:
        start = max(0, pos - CHUNK)
        carry, pieces = _chunk_newest_first(read_range(path, start, pos - start) + carry, start, start > 0)
        for offset, piece in pieces:
            if (hit := s.hit(piece)) is not None:
                yield (b := s.batch(offset, hit))
                if b.stopped:
                    return
        yield s.batch(start + len(carry))
        pos = start


def _forward_cut(data: bytes, pos: int, size: int) -> int:
    """How much of a chunk read at `pos` to search now: up to its last line break; a line longer than the
    chunk up to its last multiple of PIECE (so the next chunk's slices line up); the rest at the log's end."""
    if pos + len(data) >= size:
        return len(data)
    cut = max(data.rfind(b"\n"), data.rfind(b"\r")) + 1
    return cut or ((pos + len(data)) // PIECE * PIECE - pos) or len(data)


def search_forward(s: _Search) -> Iterator[Batch]:
    """From start, whole lines only: a batch per matching line (at = where the next line starts) and per chunk."""
    path, pos, size = Path(s.req.path), max(0, s.req.start), s.req.size
    while pos < size:
        data = read_range(path, pos, min(CHUNK, size - pos))
        if not data:
            break
        cut = _forward_cut(data, pos, size)
        for m in ONE_LINE.finditer(data, 0, cut):
            for _, piece in _slices(pos + m.start(), m.group()):
                if (hit := s.hit(piece)) is not None:
                    yield (b := s.batch(pos + m.end(), hit))
                    if b.stopped:
                        return
        pos += cut
        yield s.batch(pos)


def batches(req: Request) -> Iterator[Batch]:
    s = _Search(req)
    return search_backward(s) if req.backward else search_forward(s)


def main() -> int:
    """One JSON line per batch on stdout, flushed: a kill loses at most the chunk under way."""
    for b in batches(Request(**json.loads(sys.stdin.read()))):
        sys.stdout.write(json.dumps(asdict(b)) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
