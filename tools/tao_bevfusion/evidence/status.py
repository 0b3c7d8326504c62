"""The one status.json reader (docs/container-contract.md §4): typed records, read incrementally.

The file is JSON lines written by the container's logger hook. The reader starts at a byte offset, leaves
a partial last line for the next look, re-reads from the start when the file shrank (rotated or truncated),
and skips lines that are not JSON objects, counting them. Train iteration lines are the bulk of the file;
unless every record is asked for, only the newest one is parsed (with every validation, failure, start and
finished line), which keeps a 100,000-line file cheap.
"""

import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from pydantic import BaseModel, Field

from tao_bevfusion.core.redact import redact_bytes
from tao_bevfusion.evidence.models import Number, Text, Tolerant, Whole
from tao_bevfusion.evidence.safeio import read_regular

RARE_MARKERS = (b'"mode": "val"', b'"FAILURE"', b'"STARTED"', b"finished successfully")
TRAIN_MARKER = b'"mode": "train"'
MAX_READ = 32 << 20  # per look; a longer backlog is read on the next look (the offset advances)
WINDOW = 4 << 20  # bytes read at a time
MAX_RECORD = 1 << 20  # a longer record is skipped and counted (a real one is a few hundred bytes)


class StatusRecord(Tolerant):
    mode: Text = None
    status: Text = None
    message: Text = None
    epoch: Whole = None
    cur_iter: Whole = None
    max_iter: Whole = None
    loss: Number = None
    lr: Number = None
    eta: Text = None
    time_per_iter: Number = None
    AP11: Number = None
    AP40: Number = None

    @property
    def is_validation(self) -> bool:
        return self.mode == "val"

    @property
    def is_train(self) -> bool:
        return self.mode == "train"


class StatusChunk(BaseModel):
    records: list[StatusRecord] = Field(
        description="Parsed records in file order (see read_status)."
    )
    last_train: StatusRecord | None = Field(
        default=None, description="The newest train iteration record."
    )
    lines: int = Field(default=0, description="Complete lines read.")
    unparsed: int = Field(
        default=0, description="Parsed lines that were not JSON objects (skipped)."
    )
    overlong: int = Field(default=0, description="Records longer than MAX_RECORD (skipped unread).")
    offset: int = Field(default=0, description="Where the next read starts.")
    reset: bool = Field(
        default=False, description="The file shrank below the offset and was read anew."
    )
    losses: list[tuple[int | None, float]] = Field(
        default_factory=list,
        description=(
            "(cur_iter, loss) of every train record, in file order (the divergence detector's input)."
        ),
    )


def parse_record(line: bytes) -> StatusRecord | None:
    try:
        data = json.loads(line)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return StatusRecord.model_validate(data) if isinstance(data, dict) else None


def _rare_spans(data: bytes) -> list[tuple[int, int]]:
    spans: set[tuple[int, int]] = set()
    for marker in RARE_MARKERS:
        pos = 0
        while (hit := data.find(marker, pos)) >= 0:
            start = data.rfind(b"\n", 0, hit) + 1
            end = data.find(b"\n", hit)
            end = len(data) if end < 0 else end
            spans.add((start, end))
            pos = end + 1
    return sorted(spans)


def read_status(
    path: Path,
    offset: int = 0,
    *,
    every_record: bool = False,
    secrets: Sequence[str] = (),
    to_end: bool = False,
) -> StatusChunk:
    """Records appended since `offset` (everything, or the rare ones plus the newest train line).

    The file is read in WINDOW pieces, so memory stays bounded; a record longer than MAX_RECORD is skipped
    and counted (`overlong`), never a reason to stop. One look reads at most MAX_READ bytes (the offset
    advances, the rest comes next look) unless `to_end`: a decision that needs every record reads on to the end.
    """
    got = read_regular(path, offset, 0)
    if got is None:
        return StatusChunk(records=[], offset=offset)
    size = got[0]
    reset = size < offset
    start = 0 if reset else offset
    chunk = StatusChunk(records=[], offset=start, reset=reset)
    stop = size if to_end else min(size, start + MAX_READ)
    block = _Block(path, start, stop)
    for data in block:
        chunk.lines += data.count(b"\n")
        _parse_block(
            redact_bytes(data, secrets), chunk, every_record
        )  # offsets count the bytes on disk
    chunk.lines += block.overlong
    chunk.overlong = block.overlong
    chunk.offset = block.consumed
    chunk.last_train = next((r for r in reversed(chunk.records) if r.is_train), chunk.last_train)
    return chunk


class _Block:
    """Iterate over runs of complete lines between `start` and `stop`, WINDOW bytes at a time; a line longer
    than MAX_RECORD is dropped (counted in `overlong`) without holding it. `consumed` is where to read on."""

    def __init__(self, path: Path, start: int, stop: int) -> None:
        self.path, self.pos, self.stop = path, start, stop
        self.consumed, self.overlong = start, 0

    def __iter__(self) -> Iterator[bytes]:
        carry, skipping = b"", False
        while self.pos < self.stop:
            got = read_regular(self.path, self.pos, min(WINDOW, self.stop - self.pos))
            if got is None or not got[1]:
                return
            new = got[1]
            self.pos += len(new)
            if skipping:  # inside an overlong record: drop it up to its newline
                end = new.find(b"\n")
                if end < 0:
                    self.consumed = self.pos
                    continue
                skipping, new = False, new[end + 1 :]
                self.overlong += 1
            data = carry + new
            last = data.rfind(b"\n") + 1
            carry = data[last:]
            if len(carry) > MAX_RECORD:
                skipping, carry = True, b""
            self.consumed = self.pos - len(carry)
            if last:
                yield self._short(data[:last])

    def _short(self, data: bytes) -> bytes:
        """Complete lines without the overlong ones."""
        if len(data) <= MAX_RECORD:
            return data
        lines = data.split(b"\n")[:-1]
        kept = [line for line in lines if len(line) <= MAX_RECORD]
        self.overlong += len(lines) - len(kept)
        return b"".join(line + b"\n" for line in kept)


def _parse_block(data: bytes, chunk: StatusChunk, every_record: bool) -> None:
    if every_record:
        spans, pos = [], 0
        while pos < len(data):
            end = data.index(b"\n", pos)
            spans.append((pos, end))
            pos = end + 1
    else:
        spans = _rare_spans(data)
    for a, b in spans:
        if not data[a:b].strip():
            continue
        rec = parse_record(data[a:b])
        if rec is None:
            chunk.unparsed += 1
        else:
            chunk.records.append(rec)
    chunk.losses += train_losses(data)
    if not every_record:
        chunk.last_train = _newest_train(data) or chunk.last_train


LOSS = re.compile(rb'"loss": (NaN|-?Infinity|-?[0-9][0-9.eE+-]*)')
CUR_ITER = re.compile(rb'"cur_iter": ([0-9]+)')


def train_losses(data: bytes) -> list[tuple[int | None, float]]:
    """(cur_iter, loss) of each train line, found by byte search (no JSON parse of every record)."""
    out: list[tuple[int | None, float]] = []
    pos = 0
    while (hit := data.find(TRAIN_MARKER, pos)) >= 0:
        start = data.rfind(b"\n", 0, hit) + 1
        end = data.find(b"\n", hit)
        end = len(data) if end < 0 else end
        line, pos = data[start:end], end + 1
        loss, it = LOSS.search(line), CUR_ITER.search(line)
        if loss:
            out.append((int(it.group(1)) if it else None, float(loss.group(1))))
    return out


def _newest_train(data: bytes) -> StatusRecord | None:
    hit = data.rfind(TRAIN_MARKER)
    if hit < 0:
        return None
    start = data.rfind(b"\n", 0, hit) + 1
    return parse_record(data[start : data.find(b"\n", hit)])


def read_all(path: Path) -> list[StatusRecord]:
    """Every record of the file (curves, checkpoint choice); bad lines skipped."""
    return read_status(path, 0, every_record=True, to_end=True).records
