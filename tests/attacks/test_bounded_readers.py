"""Issue 17 items 7 and 8 without an engine: the windowed status.json reader and the capped line splitter
agree with a plain reference reader on any bytes, whatever the window and record limits (Hypothesis)."""

import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tao_bevfusion.backends.logsync import MARKER, LogWindow, RecordCap, open_record_length, parse_stamp
from tao_bevfusion.evidence import status as status_mod

pytestmark = [pytest.mark.attack]
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

record = st.fixed_dictionaries({"mode": st.sampled_from(["train", "val"]), "epoch": st.integers(0, 9)})
line = st.one_of(record.map(lambda r: json.dumps(r).encode()), st.binary(max_size=90).map(
    lambda b: b.replace(b"\n", b"")))


def _reference(data: bytes, limit: int) -> tuple[list[dict[str, object]], int]:
    """Every complete line of at most `limit` bytes that is a JSON object, and the count of longer ones."""
    lines = data.split(b"\n")[:-1]
    out = []
    for raw in lines:
        if len(raw) > limit:
            continue
        rec = status_mod.parse_record(raw) if raw.strip() else None
        if rec is not None:
            out.append(rec.model_dump())
    return out, sum(len(raw) > limit for raw in lines)


@FUZZ
@given(lines=st.lists(line, max_size=30), window=st.integers(8, 200), limit=st.integers(4, 120),
       tail=st.binary(max_size=50).map(lambda b: b.replace(b"\n", b"")))
def test_windowed_status_reader_matches_the_reference(tmp_path: Path, monkeypatch, lines, window, limit, tail):
    monkeypatch.setattr(status_mod, "WINDOW", window)
    monkeypatch.setattr(status_mod, "MAX_RECORD", limit)
    path = tmp_path / "status.json"
    body = b"".join(ln + b"\n" for ln in lines)
    path.write_bytes(body + tail)
    chunk = status_mod.read_status(path, every_record=True, to_end=True)
    want, overlong = _reference(body, limit)
    assert [r.model_dump() for r in chunk.records] == want
    assert chunk.overlong == overlong and chunk.lines == len(lines)
    partial_long = len(tail) > limit  # an unfinished overlong record is passed, never re-read
    assert chunk.offset == (len(body) + len(tail) if partial_long else len(body))


def _frames(lines: list[bytes], entry: int) -> list[bytes]:
    """Docker's frames: each line cut into `entry`-byte entries stamped alike; two lines per second."""
    out = []
    for i, line in enumerate(lines):
        stamp = f"2026-12-01T10:00:{i // 2:02d}.{i + 1:09d}Z ".encode()
        out += [stamp + line[j:j + entry] for j in range(0, len(line), entry)]
    return out


def _sync(log: Path, frames: list[bytes], boundary: int, prior: set, limit: int) -> LogWindow:
    window = LogWindow(boundary, prior, RecordCap(open_record_length(log, limit), limit))
    with open(log, "ab") as out:
        for frame in frames:
            if parse_stamp(frame.split(b" ", 1)[0].decode())[0] >= boundary:  # `since` is whole seconds
                window.append(out, frame)
    return window


@FUZZ
@given(lines=st.lists(st.binary(min_size=1, max_size=60).map(lambda b: b.replace(b"\n", b"") + b"\n"),
                      min_size=1, max_size=8),
       last=st.binary(max_size=60).map(lambda b: b.replace(b"\n", b"")),
       entry=st.integers(1, 16), limit=st.integers(1, 40), cut=st.integers(0, 400))
def test_log_sync_in_two_looks_writes_every_entry_once_and_cuts_overlong_records(
        tmp_path: Path, lines, last, entry, limit, cut):
    frames = _frames([*lines, last] if last else lines, entry)
    log = tmp_path / "job.log"
    log.write_bytes(b"")
    first = _sync(log, frames[:cut], 0, set(), limit)
    _sync(log, frames, first.top, set(first.top_seen), limit)
    want = []
    for part in re.split(rb"([\r\n])", b"".join(lines) + last):
        want.append(part if len(part) <= limit or part in (b"\r", b"\n") else part[:limit] + MARKER)
    assert log.read_bytes() == b"".join(want)
