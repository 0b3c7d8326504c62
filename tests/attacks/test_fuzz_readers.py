"""Property tests (Hypothesis) for the status.json and log readers: arbitrary bytes, files that shrink or
are rewritten between reads, foreign JSON lines and odd types. Budget: MAX_EXAMPLES per property."""

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.attacks.readers import scan_log, scan_status

pytestmark = [pytest.mark.attack, pytest.mark.heavy]
MAX_EXAMPLES = 150
FUZZ = settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20))
json_value = st.recursive(json_scalar, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                              st.dictionaries(st.text(max_size=8), kids, max_size=4)),
                          max_leaves=12)
MARKED_KEYS = st.sampled_from(["mode", "status", "message", "epoch", "cur_iter", "max_epoch", "loss", "AP11",
                               "AP40", "iteration"])
MARKED_VALUES = st.one_of(st.sampled_from(["train", "val", "FAILURE", "STARTED", "RUNNING", "SUCCESS",
                                           "Train finished successfully."]), json_value)
record = st.dictionaries(MARKED_KEYS, MARKED_VALUES, max_size=6)
line = st.one_of(record.map(lambda r: json.dumps(r).encode()),
                 json_value.map(lambda v: json.dumps(v).encode()),
                 st.binary(max_size=80),
                 st.sampled_from([b'["finished successfully"]', b'"FAILURE"', b'{"mode": "val"', b"\xff\xfe"]))
chunks = st.lists(st.lists(line, max_size=6).map(lambda ls: b"\n".join(ls) + b"\n"), min_size=1, max_size=4)
# Each step writes new content: append, or rewrite the file (shrinks/rotations) before the next read.
steps = st.lists(st.tuples(st.sampled_from(["append", "rewrite", "truncate"]), st.binary(max_size=200) | line),
                 min_size=1, max_size=6)


def _read_status(path: Path, state: dict[str, Any]) -> None:
    scan_status(path, state["cursor"], state["findings"], state["progress"], state["metrics"])


def _state() -> dict[str, Any]:
    return {"cursor": {}, "findings": {}, "progress": {}, "metrics": {}}


def _apply(path: Path, op: str, data: bytes) -> None:
    if op == "append":
        with open(path, "ab") as fh:
            fh.write(data + b"\n")
    elif op == "rewrite":
        path.write_bytes(data + b"\n")
    else:
        size = path.stat().st_size if path.exists() else 0
        with open(path, "ab") as fh:
            fh.truncate(size // 2)


@FUZZ
@given(chunks=chunks, ops=steps)
def test_status_reader_never_raises_and_offsets_stay_in_file(tmp_path: Path, chunks, ops):
    path = tmp_path / "status.json"
    path.write_bytes(b"")
    state = _state()
    for chunk in chunks:
        _apply(path, "append", chunk)
        _read_status(path, state)
    for op, data in ops:
        _apply(path, op, data)
        _read_status(path, state)
        assert 0 <= int(state["cursor"]["status_offset"]) <= path.stat().st_size
    json.dumps(state["findings"], default=str)  # what get_job folds must stay serialisable


@FUZZ
@given(chunks=chunks)
def test_status_reader_says_what_it_skipped(tmp_path: Path, chunks):
    """Every complete line is either folded or counted as skipped (findings['status'] says how many)."""
    path = tmp_path / "status.json"
    state = _state()
    for chunk in chunks:
        _apply(path, "append", chunk)
    _read_status(path, state)
    st_ = state["findings"]["status"]
    assert st_["records"] == path.read_bytes().count(b"\n")
    assert "skipped" in st_ or "unparsed" in st_ or all(
        isinstance(_try(ln), dict) for ln in path.read_bytes().split(b"\n") if ln.strip())


def _try(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


@FUZZ
@given(data=st.lists(st.binary(max_size=400), min_size=1, max_size=5), ops=steps, final=st.booleans())
def test_log_reader_never_raises_and_offsets_stay_in_file(tmp_path: Path, data, ops, final):
    path = tmp_path / "job.log"
    path.write_bytes(b"")
    cursor: dict[str, Any] = {}
    findings: dict[str, Any] = {}
    progress: dict[str, Any] = {}
    for piece in data:
        with open(path, "ab") as fh:
            fh.write(piece)
        scan_log(path, cursor, findings, progress, final=final)
    for op, piece in ops:
        _apply(path, op, piece)
        scan_log(path, cursor, findings, progress, final=final)
        assert 0 <= int(cursor["log_offset"]) <= path.stat().st_size
