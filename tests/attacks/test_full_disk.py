"""Still open from issue 11, on the real engine: a full state disk (a small tmpfs as the state dir) makes
get_job answer an EngineError with the cause, never a raw OSError; once space returns the job finishes
and its log holds every line once."""

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.attacks.helpers import finish, launch, mcp_call
from tests.conftest import copy_sample

pytestmark = [pytest.mark.attack, pytest.mark.docker]


@pytest.fixture
def small_home(docker_ws: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.fail("needs root to mount a tmpfs (CI runs as root)")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", str(mount)], check=True)
    monkeypatch.setenv("TAO_BEVFUSION_HOME", str(mount / "home"))
    monkeypatch.setenv("TAO_BEVFUSION_ROOTS", f"{docker_ws}:{mount}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(folder: Path, leave: int) -> Path:
    """Fill the disk, then free `leave` bytes (room for part of a sync, not for its state file)."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        fh.truncate(max(0, fh.tell() - leave))
    return filler


@pytest.mark.parametrize("leave", [0, 4096, 8192])
def test_a_full_state_disk_is_an_engine_error_and_the_log_stays_whole(docker_ws: Path, small_home: Path, leave):
    root = copy_sample(docker_ws / "kitti")
    job = launch("dataset_convert", root, env={"FAKE_TAO_ITER_SECONDS": "0.3"})
    first = mcp_call("get_job", {"job_id": job.job_id})
    assert not first.is_error, first.content[0].text
    filler = _fill(small_home, leave)
    r = mcp_call("get_job", {"job_id": job.job_id})
    if r.is_error:  # the sync had new lines to write: the cause is named, as an engine error
        text = r.content[0].text
        assert "engine error (job records kept)" in text and "full" in text and "Errno" not in text, text
    filler.unlink()
    s = finish(job.job_id, 120)
    assert s.state == "succeeded", s.verdict
    log = (small_home / "home" / "jobs" / job.job_id / "job.log").read_text()
    head = log.splitlines()[0]
    assert log.count(head) == 1, log[:600]


def test_a_spec_that_cannot_be_written_for_a_full_disk_is_an_engine_error(docker_ws: Path, small_home: Path):
    """build_spec on a full state disk: an engine error (retry once there is space), not an input error."""
    root = copy_sample(docker_ws / "kitti")
    mcp_call("list_jobs", {})
    filler = _fill(small_home, 0)
    r = mcp_call("build_spec", {"action": "train", "data_root": str(root)})
    filler.unlink()
    text = r.content[0].text
    assert r.is_error and "engine error (job records kept)" in text and "disk space" in text, text
