"""Attacks found while fixing issue 11 (phase 2): hostile evidence files, paths into the state dir, pending
records, and keys at the edge of a cut. Driven through the public tools where a tool exists."""

import os
import time
from pathlib import Path

import pytest
from tao_bevfusion.jobs.context import app_context
from tao_bevfusion.jobs.reconcile import submitter_token

from tests.attacks.helpers import call, cli, mcp_call, refused
from tests.attacks.readers import scan_log, scan_status

pytestmark = [pytest.mark.attack]
KEY = "Zq7-secret-KEY-9x4"


@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "link_out"])
def test_hostile_status_and_log_files_are_not_read(tmp_path: Path, kind: str):
    """status.json / job.log as a FIFO, a link to /dev/zero or to a host file: the readers return at once
    and read nothing (a poll must neither hang nor grow without bound nor read outside)."""
    secret = tmp_path / "host_secret.json"
    secret.write_text('{"status": "FAILURE", "message": "HOST-SECRET"}\n')
    for name in ("status.json", "job.log"):
        path = tmp_path / name
        if kind == "fifo":
            os.mkfifo(path)
        else:
            path.symlink_to("/dev/zero" if kind == "dev_zero" else secret)
    t = time.monotonic()
    state: dict = {"cursor": {}, "findings": {}, "progress": {}, "metrics": {}}
    scan_status(tmp_path / "status.json", state["cursor"], state["findings"], state["progress"], state["metrics"])
    scan_log(tmp_path / "job.log", state["cursor"], state["findings"], state["progress"], final=True)
    assert time.monotonic() - t < 2
    assert "HOST-SECRET" not in str(state) and state["findings"]["status"]["records"] == 0


def test_data_root_inside_the_state_dir_is_refused(workspace: Path, raw_root: Path):
    """A dataset root inside the state dir would mount jobs.db and the signing key into convert (read-write)."""
    inner = workspace / "home" / "kitti"
    raw_root.rename(inner)
    assert "state dir" in refused("build_spec", action="dataset_convert", data_root=str(inner))


def test_spec_output_path_beside_other_specs_is_refused(workspace: Path, raw_root: Path):
    """The spec folder is mounted: output_path directly in specs/ (or the state dir) would expose every
    other spec and its key. A subfolder of specs/ is fine."""
    for bad in (workspace / "home" / "x.yaml", workspace / "home" / "specs" / "x.yaml"):
        assert "output_path" in refused("build_spec", action="train", data_root=str(raw_root), output_path=str(bad))
    ok = call("build_spec", action="train", data_root=str(raw_root),
              output_path=str(workspace / "home" / "specs" / "mine" / "train.yaml"))
    assert ok.spec_path.endswith("mine/train.yaml")


def _pending(workspace: Path, submitter: str | None, age: float = 0.0) -> str:
    ctx = app_context()
    job = ctx.store.create(action="train", backend="local", spec_path=str(workspace / "s.yaml"), spec_sha256="0",
                           results_dir=str(workspace / f"r{time.monotonic_ns()}"), data_root=str(workspace),
                           meta={"submitter": submitter})
    if age:
        with ctx.store._conn() as conn:
            conn.execute("UPDATE jobs SET created_at = created_at - ? WHERE id = ?", (age, job.id))
    return job.id


def test_pending_record_of_a_dead_submitter_is_failed(workspace: Path):
    job_id = _pending(workspace, "nohost-but-this:1:1".replace("nohost-but-this", os.uname().nodename), age=5)
    s = call("get_job", job_id=job_id)
    assert s.state == "failed" and "interrupted" in s.verdict.reason, s.verdict


def test_pending_record_of_a_live_submitter_stays_pending_then_cancels(workspace: Path):
    job_id = _pending(workspace, submitter_token(), age=5)
    assert call("get_job", job_id=job_id).state == "pending"  # its submit may still be under way
    c = call("cancel_job", job_id=job_id, force=True)
    assert c.state == "canceled", c


def test_cli_reads_the_key_from_the_environment(raw_root: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TAO_BEVFUSION_ENCRYPTION_KEY", KEY)
    rc, out, err = cli("build-spec", "--action", "train", "--data-root", str(raw_root), "--json")
    assert rc == 0, err
    spec_path = next(line.split('"')[3] for line in out.splitlines() if '"spec_path"' in line)
    assert KEY in Path(spec_path).read_text() and KEY not in out


def test_too_long_key_through_the_cli_is_not_echoed(raw_root: Path, tmp_path: Path):
    keyfile = tmp_path / "key"
    keyfile.write_text("LEAK" + "k" * 700)
    rc, out, err = cli("build-spec", "--action", "train", "--data-root", str(raw_root), "--encryption-key-file",
                       str(keyfile))
    assert rc == 2 and "LEAKkkkk" not in out + err


def test_result_text_of_a_huge_error_stays_small(raw_root: Path):
    """Unknown keys with long names, many of them: the MCP text stays under 8 KB and states the count."""
    r = mcp_call("build_spec", {"action": "train", "data_root": str(raw_root),
                                "overrides": {f"train.{'q' * 150}_{i}": i for i in range(300)}})
    assert r.is_error and len(r.content[0].text) < 8192 and "300" in r.content[0].text


def test_early_cancel_of_a_local_job_is_not_lost(tmp_path: Path):
    """SIGTERM to the job's process group before the job installs any handler: the runner ignores it, but the
    job must not inherit that (it would run to the end and the cancel would read as a success)."""
    import signal
    import subprocess
    import sys

    exit_file = tmp_path / "exit.json"
    proc = subprocess.Popen([sys.executable, "-m", "tao_bevfusion.backends.local_runner", str(exit_file), "--",
                             sys.executable, "-c", "import time; time.sleep(3)"], start_new_session=True)
    time.sleep(0.8)  # the runner is up, the child is (in) its interpreter start-up or sleeping
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=10)
    assert '"signal": 15' in exit_file.read_text()


def test_checkpoint_in_the_state_dir_root_is_refused(workspace: Path, raw_root: Path):
    """A .pth placed in the state dir itself: its folder (jobs.db, the signing key) would be mounted."""
    ckpt = workspace / "home" / "epoch_1.pth"
    ckpt.write_bytes(b"{}")
    assert "state dir" in refused("build_spec", action="evaluate", data_root=str(raw_root), checkpoint=str(ckpt))
