"""Hypothesis on the readers issue 17 (h17a) touched: the Slurm end record and node-log copier (files in a
shared log folder), a job's recorded spec read back by hash, and the HTTP token file."""

import hashlib
import io
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tao_bevfusion.backends.slurm.backend import _copy_new, _end_record
from tao_bevfusion.core.errors import InputError
from tao_bevfusion.core.yamlio import load_recorded, read_recorded_mapping
from tao_bevfusion.httpauth import _read_private

pytestmark = [pytest.mark.attack, pytest.mark.heavy]
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
RECORDS = st.one_of(st.binary(max_size=300), st.builds(lambda d: json.dumps(d).encode(), st.dictionaries(
    st.sampled_from(["job_id", "state", "srun_rc", "end", "x"]),
    st.one_of(st.none(), st.integers(), st.text(max_size=10), st.lists(st.integers(), max_size=2)), max_size=5)))


@FUZZ
@given(RECORDS, st.sampled_from([None, "17", "999999"]))
def test_end_record_never_raises_and_believes_only_its_job(tmp_path: Path, data: bytes, slurm_id):
    path = tmp_path / "end.json"
    path.write_bytes(data)
    state = _end_record(path, slurm_id)
    if state is not None and slurm_id is not None:
        assert str(json.loads(data)["job_id"]) == slurm_id


@FUZZ
@given(st.lists(st.binary(max_size=200), max_size=6), st.integers(min_value=-5, max_value=5000))
def test_node_log_copier_never_raises_and_stays_in_the_file(tmp_path: Path, chunks, start):
    path = tmp_path / "node.log"
    path.write_bytes(b"")
    out = io.BytesIO()
    offset = max(0, start)
    for chunk in chunks:
        with path.open("ab") as fh:
            fh.write(chunk)
        offset = _copy_new(path, offset, out, b"[n] ")
        assert 0 <= offset <= path.stat().st_size or offset == max(0, start)


@FUZZ
@given(st.binary(max_size=2000), st.booleans())
def test_recorded_spec_is_read_only_with_its_hash(tmp_path: Path, data: bytes, same_hash: bool):
    path = tmp_path / "spec.yaml"
    path.write_bytes(data)
    digest = hashlib.sha256(data if same_hash else data + b"x").hexdigest()
    try:
        load_recorded(path, digest)
        assert same_hash
    except InputError as exc:
        assert not same_hash or "changed" not in exc.render()
    shown = read_recorded_mapping(path, digest)
    assert isinstance(shown, dict) and (same_hash or shown == {})


@FUZZ
@given(st.binary(max_size=200), st.sampled_from([0o600, 0o640, 0o644, 0o400]))
def test_token_file_reader_never_raises_anything_but_input_errors(tmp_path: Path, data: bytes, mode: int):
    path = tmp_path / "token"
    path.write_bytes(data)
    os.chmod(path, mode)
    try:
        token = _read_private(path, "--token-file")
    except InputError:
        return
    assert mode & 0o077 == 0 and len(token) >= 16 and token == token.strip()
