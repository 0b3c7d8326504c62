"""A job's persisted export queue: what a poll read goes to `outbox.jsonl`; a sender drains it later.

Two sides, each with its own cursor file and its own lock, so a slow tracker never holds up a poll:
- the reading side (`export.json`: how far status.json was exported, which one-off steps are queued),
  written under `enqueue.lock` by the poll that read the records;
- the sending side (`sent.json`: the byte offset of the outbox already accepted by the tracker, the run id,
  the back-off and the first failure), written under `send.lock` by whichever process drains.
Both locks are taken without blocking: a second process finds them busy and leaves the work to the first.
Every metric carries a timestamp fixed when it was read, so an op re-sent after a crash is an exact duplicate,
which the MLflow store ignores (metrics are never doubled).
"""

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from tao_bevfusion.core.layout import private_dirs

MAX_BATCH_BYTES = 8 << 20  # per drain step: a huge backlog goes out over several steps


class ExportCursor(BaseModel):
    """What the reading side has queued."""

    status_offset: int = 0
    started: bool = False
    ended: bool = False
    ap_signature: str = ""
    best_trial: int | None = None
    trials_done: list[int] = Field(default_factory=list)
    queued_ops: int = 0


class SendState(BaseModel):
    """What the sending side has delivered, and how the tracker has answered."""

    offset: int = 0
    run_id: str | None = None
    experiment_id: str | None = None
    failures: int = 0
    next_try: float = 0.0
    first_error: str | None = None
    last_error: str | None = None
    warned: bool = False
    gave_up: str | None = None
    sent_ops: int = 0


def _write(path: Path, model: BaseModel) -> None:
    """In place, not write-and-rename (a rename costs milliseconds on some filesystems, on every poll): a
    file cut by a crash reads as a fresh cursor, and a fresh cursor only re-sends exact repeats."""
    data = model.model_dump_json().encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


class Outbox:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.queue = folder / "outbox.jsonl"

    def cursor(self) -> ExportCursor:
        try:
            return ExportCursor.model_validate_json((self.folder / "export.json").read_bytes())
        except (OSError, ValueError):
            return ExportCursor()

    def save_cursor(self, cursor: ExportCursor) -> None:
        _write(self.folder / "export.json", cursor)

    def state(self) -> SendState:
        try:
            return SendState.model_validate_json((self.folder / "sent.json").read_bytes())
        except (OSError, ValueError):
            return SendState()

    def save_state(self, state: SendState) -> None:
        _write(self.folder / "sent.json", state)

    @contextmanager
    def lock(self, name: str) -> Iterator[bool]:
        """flock(<name>.lock) without waiting: yields False when another process holds it."""
        private_dirs(self.folder)
        fd = os.open(self.folder / f"{name}.lock", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # closing drops the lock

    def append(self, ops: list[dict[str, Any]]) -> None:
        if not ops:
            return
        text = "".join(json.dumps(op, allow_nan=False, separators=(",", ":")) + "\n" for op in ops)
        fd = os.open(self.queue, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "ab") as fh:
            if fh.tell() and not self._ends_with_newline():
                fh.write(b"\n")  # a write cut short by a crash: never glue the next op onto it
            fh.write(text.encode())

    def _ends_with_newline(self) -> bool:
        with open(self.queue, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) == b"\n"

    def size(self) -> int:
        try:
            return self.queue.stat().st_size
        except OSError:
            return 0

    def pending(self, offset: int) -> list[tuple[int, dict[str, Any]]]:
        """(end offset, op) of complete lines from `offset`, at most MAX_BATCH_BYTES of them."""
        try:
            with open(self.queue, "rb") as fh:
                fh.seek(offset)
                data = fh.read(MAX_BATCH_BYTES)
        except OSError:
            return []
        out, pos = [], 0
        while (end := data.find(b"\n", pos)) >= 0:
            line = data[pos:end]
            pos = end + 1
            try:
                op = json.loads(line)
            except ValueError:
                op = None  # a line cut by a crash: skipped
            out.append((offset + pos, op if isinstance(op, dict) else {"op": "skip"}))
        if not out and len(data) == MAX_BATCH_BYTES:  # one line longer than a batch: never sendable
            out.append((offset + len(data), {"op": "skip"}))
        return out
