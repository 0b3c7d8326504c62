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


class _Engine:
    """A container's json-file log as dockerd serves it: entries in the order they were written (stdout and
    stderr have separate copiers, so not by stamp), `since` in whole seconds, `shown` of them written so far."""

    def __init__(self, entries: list[tuple[str, bytes]]) -> None:
        self.entries, self.shown, self.containers = entries, 0, self

    def get(self, handle: str) -> "_Engine":
        return self

    def logs(self, since: int | None = None, **_: object) -> list[bytes]:
        return [f"{stamp} ".encode() + body for stamp, body in self.entries[:self.shown]
                if parse_stamp(stamp)[0] >= (since or 0)]


def _long_line_and_a_stderr_line(total: int, stderr_after: int, stderr_second: int) -> list[tuple[str, bytes]]:
    """What the stand-in's launcher makes of FAKE_TAO_FAULT=long_log_line on a loaded host: one stdout line
    of `total` bytes in 16 KB partial entries that all carry its first partial's stamp, and the launcher's
    stderr footer, logged while the stdout copier still drains the line, after `stderr_after` partials."""
    partials = [b"x" * (16 << 10)] * (total >> 14)
    entries = [("2026-12-01T10:00:00.1Z", b"torchrun train.py\n")]
    entries += [("2026-12-01T10:00:00.2Z", p) for p in partials[:stderr_after]]
    entries.append((f"2026-12-01T10:00:0{stderr_second}.3Z", b"[TAO Toolkit] Execution status: PASS\n"))
    entries += [("2026-12-01T10:00:00.2Z", p) for p in partials[stderr_after:]]
    entries.append(("2026-12-01T10:00:00.2Z", b" END-OF-THE-LONG-LINE\n"))
    return [*entries, (f"2026-12-01T10:00:0{stderr_second}.4Z", b"after the long line\n")]


@pytest.mark.parametrize(("total", "stderr_after", "stderr_second"),
                         [(2 << 20, 120, 0), (2 << 20, 120, 1), (2 << 20, 20, 1), (64 << 10, 2, 1)])
def test_a_line_of_the_other_stream_inside_a_long_line_is_kept_and_cuts_nothing_else(
        tmp_path: Path, monkeypatch, total: int, stderr_after: int, stderr_second: int):
    """The flaky long_log_line failure: the stderr footer, logged amid the stdout line's partials, ended the
    cut record, so the rest of the line was written uncut (END-OF-THE-LONG-LINE in job.log) and the footer
    itself was dropped as part of the cut record. Whichever entry a sync stops after (`since` whole seconds,
    the footer maybe in the next second), job.log is the same: the line's first MB and one marker (a shorter
    line whole, split where the footer came), the footer on a line of its own, every line once."""
    from tao_bevfusion.backends import docker as docker_backend
    from tao_bevfusion.backends.logsync import RECORD_LIMIT

    entries = _long_line_and_a_stderr_line(total, stderr_after, stderr_second)
    engine = _Engine(entries)
    monkeypatch.setattr(docker_backend, "_client", lambda: engine)
    before, footer = stderr_after << 14, b"\n[TAO Toolkit] Execution status: PASS\n"
    if before > RECORD_LIMIT:  # cut before the footer came: nothing of the line after it
        line = b"x" * RECORD_LIMIT + MARKER + footer
    elif total > RECORD_LIMIT:
        line = b"x" * before + footer + b"x" * (RECORD_LIMIT - before) + MARKER + b"\n"
    else:
        line = b"x" * before + footer + b"x" * (total - before) + b" END-OF-THE-LONG-LINE\n"
    want = b"torchrun train.py\n" + line + b"after the long line\n"
    for stop in range(len(entries) + 1):
        log = tmp_path / str(stop) / "job.log"
        for engine.shown in (stop, len(entries)):
            docker_backend.DockerBackend().sync_logs("c", log)
        data = log.read_bytes()
        assert data == want, (stop, len(data), data.count(MARKER), b"END-OF" in data, data[-120:])



@st.composite
def _two_streams(draw: st.DrawFn) -> list[tuple[str, bytes]]:
    """Entries of a stdout and a stderr copier as dockerd logs them: each line in `entry`-byte partials that
    carry its first partial's stamp, the two streams interleaved at random, time crossing whole seconds."""
    entry = draw(st.integers(1, 12))
    text = st.binary(max_size=40).map(lambda b: b.replace(b"\n", b""))
    queues = []
    for lines in (draw(st.lists(text, max_size=5)), draw(st.lists(text, max_size=5))):
        queue = []
        for i, body in enumerate(lines):
            parts = [body[j:j + entry] for j in range(0, len(body), entry)] or [b""]
            queue += [(i, p) for p in parts[:-1]] + [(i, parts[-1] + b"\n")]
        queues.append(queue)
    total = len(queues[0]) + len(queues[1])
    out: list[tuple[str, bytes]] = []
    now, heads, stamps = 0, [0, 0], {}
    for pick in draw(st.lists(st.integers(0, 1), min_size=total, max_size=total)):
        side = pick if heads[pick] < len(queues[pick]) else 1 - pick
        line, piece = queues[side][heads[side]]
        heads[side] += 1
        now += draw(st.sampled_from([1, 300_000_000, 1_000_000_000]))
        sec = now // 10**9
        out.append((stamps.setdefault((side, line), f"2026-12-01T10:{sec // 60:02d}:{sec % 60:02d}.{now % 10**9:09d}Z"),
                    piece))
    return out


@FUZZ
@given(entries=_two_streams(), stops=st.lists(st.integers(0, 500), max_size=4), limit=st.integers(1, 30))
def test_log_sync_of_two_interleaved_streams_is_the_same_whatever_the_syncs(tmp_path: Path, entries, stops, limit):
    """Syncs anywhere (each resuming from the state the last one saved, `since` in whole seconds) write what one
    sync at the end writes: every entry once, an unfinished line continued with its own cap; no record over
    the limit and its marker."""
    def synced(name: str, cuts: list[int]) -> bytes:
        log = tmp_path / name
        log.write_bytes(b"")
        state: dict = {}
        for stop in [*sorted(cuts), len(entries)]:
            window = LogWindow.resume(state, log, limit)
            with open(log, "ab") as out:
                for stamp, body in entries[:stop]:
                    if parse_stamp(stamp)[0] >= window.since:
                        window.append(out, f"{stamp} ".encode() + body)
            state = json.loads(json.dumps(window.state()))
        return log.read_bytes()

    once = synced("once", [])
    assert synced("pieces", stops) == once
    assert all(len(r) <= limit + len(MARKER) for r in re.split(rb"[\r\n]", once))
