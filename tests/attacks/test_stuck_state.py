"""Stuck or lost state (issue 11): records that never finish, one bad job taking others down, overwritten
results, store trouble with raw tracebacks, datasets rewritten under a running train."""

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.attacks.helpers import FAST, call, cli, finish, launch, mcp_call, wait_until
from tests.conftest import REPO

pytestmark = [pytest.mark.attack]
SLOW = {"FAKE_TAO_ITER_SECONDS": "0.7"}


def _pending_without_handle(home: Path) -> str | None:
    db = home / "jobs.db"
    if not db.exists():
        return None
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.05) as con:
            row = con.execute("SELECT id FROM jobs WHERE state='pending'").fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row else None


@pytest.mark.docker
def test_cli_killed_during_submit_leaves_no_orphan(converted: Path, workspace: Path, engine):
    """SIGKILL the CLI while its record is pending. Decision: get_job reconciles the record (finds the
    container by its labels, or fails the record after a bound), cancel_job(force) stops it, and no
    container of that job is left behind once it is terminal."""
    home = workspace / "home"
    argv = [sys.executable, "-m", "tao_bevfusion.cli", "run-action", "--action", "train", "--data-root", str(converted),
            "--automl-policy", "off", "--gpus", "[]", "--overrides", json.dumps({"num_epochs": 20, "batch_size": 1}),
            "--env", json.dumps(SLOW)]
    proc = subprocess.Popen(argv, cwd=REPO, env=dict(os.environ), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    job_id = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        job_id = _pending_without_handle(home)
        if job_id:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    assert job_id, "never saw the pending record"
    time.sleep(3)
    s = call("get_job", job_id=job_id)
    assert s.state != "pending", "the record stays pending for ever"
    c = call("cancel_job", job_id=job_id, force=True)
    assert c.state in ("canceled", "failed", "succeeded", "unknown"), c
    wait_until(lambda: not engine.containers.list(all=True, filters={"label": f"tao-bevfusion.job={job_id}"}),
               timeout=30)


@pytest.mark.docker
def test_truncated_job_log_does_not_break_this_or_other_jobs(converted: Path, workspace: Path):
    """Truncate a running job's job.log: get_job, get_job_logs, cancel_job and list_jobs all still answer."""
    other = launch("train", converted, overrides={"num_epochs": 1, "batch_size": 1}, results_dir=str(
        workspace / "other"))
    r = launch("train", converted, overrides={"num_epochs": 6, "batch_size": 1}, env=SLOW)
    log = workspace / "home" / "jobs" / r.job_id / "job.log"
    wait_until(lambda: call("get_job", job_id=r.job_id) and log.is_file() and log.stat().st_size > 200, timeout=60)
    time.sleep(1.5)
    call("get_job", job_id=r.job_id)
    log.write_bytes(b"")
    for name, args in [("get_job", {"job_id": r.job_id}), ("get_job_logs", {"job_id": r.job_id}),
                       ("list_jobs", {}), ("get_job", {"job_id": other.job_id}),
                       ("cancel_job", {"job_id": r.job_id, "force": True})]:
        res = mcp_call(name, args)
        assert not res.is_error, (name, res.content[0].text)


@pytest.mark.docker
def test_relaunching_a_spec_never_overwrites_a_finished_job(converted: Path):
    """Run the same spec_path twice: the first job's checkpoints stay as they were. Decision: each launch
    gets its own results folder, or the reuse is refused with the fix (build a new spec)."""
    built = call("build_spec", action="train", data_root=str(converted), overrides=FAST)
    first = finish(call("run_action", action="train", spec_path=built.spec_path, automl_policy="off",
                        gpus=[]).job_id)
    assert first.state == "succeeded"
    ckpt = Path(built.results_dir) / "train" / "epoch_2.pth"
    before = (ckpt.stat().st_mtime_ns, ckpt.read_bytes())
    second = mcp_call("run_action", {"action": "train", "spec_path": built.spec_path, "automl_policy": "off",
                                     "gpus": []})
    if not second.is_error:
        finish(second.structured_content["job_id"])
        assert second.structured_content["summary"]["job_id"] != first.job_id
    assert (ckpt.stat().st_mtime_ns, ckpt.read_bytes()) == before, "first job's checkpoint was overwritten"


@pytest.mark.docker
def test_truncated_jobs_db_is_an_error_not_no_jobs(converted: Path, workspace: Path):
    """A truncated jobs.db must not read as 'no jobs': an actionable error naming the file."""
    assert call("list_jobs").jobs, "setup: one job recorded"
    db = workspace / "home" / "jobs.db"
    for extra in ("-wal", "-shm"):
        Path(str(db) + extra).unlink(missing_ok=True)
    db.write_bytes(db.read_bytes()[:1024])
    rc, out, err = cli("list-jobs")
    assert rc == 2 and "jobs.db" in err, (rc, out, err)


def test_garbage_jobs_db_gives_an_actionable_error(workspace: Path):
    (workspace / "home" / "jobs.db").write_bytes(os.urandom(8192))
    rc, _out, err = cli("list-jobs")
    assert rc == 2 and "Traceback" not in err and "jobs.db" in err, (rc, err)


@pytest.fixture
def tiny_home(workspace: Path, monkeypatch: pytest.MonkeyPatch):
    """A state dir on a 2 MB tmpfs (root only), for full-disk and read-only attacks."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    home = workspace / "tinyhome"
    home.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(home)], check=True)
    monkeypatch.setenv("TAO_BEVFUSION_HOME", str(home))
    monkeypatch.setenv("TAO_BEVFUSION_ROOTS", f"{workspace}:{home}")
    yield home
    subprocess.run(["umount", "-l", str(home)], check=False)


def test_read_only_state_dir_gives_an_actionable_error(raw_root: Path, tiny_home: Path):
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_home)], check=True)
    rc, _out, err = cli("build-spec", "--action", "train", "--data-root", str(raw_root))
    assert rc == 2 and "Traceback" not in err and "read-only" in err.lower(), (rc, err)
    rc, _out, err = cli("list-jobs")
    assert rc in (0, 2) and "Traceback" not in err, (rc, err)


def test_full_disk_build_spec_is_actionable_and_leaves_no_tmp(raw_root: Path, tiny_home: Path):
    filler = tiny_home / "filler"
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
        except OSError:
            pass
    rc, _out, err = cli("build-spec", "--action", "train", "--data-root", str(raw_root))
    assert rc == 2 and "Traceback" not in err and ("space" in err.lower() or "full" in err.lower()), (rc, err)
    leftovers = [p for p in tiny_home.rglob("*.tmp")]
    assert not leftovers, leftovers


@pytest.mark.docker
def test_convert_refused_while_a_train_reads_the_root(converted: Path):
    """dataset_convert rewrites the pickles a running train reads: refused while a job uses that root."""
    r = launch("train", converted, overrides={"num_epochs": 10, "batch_size": 1}, env=SLOW)
    wait_until(lambda: call("get_job", job_id=r.job_id).state == "running", timeout=30)
    res = mcp_call("run_action", {"action": "dataset_convert", "data_root": str(converted), "gpus": []})
    assert res.is_error and r.job_id in res.content[0].text, res.content[0].text
    call("cancel_job", job_id=r.job_id, force=True)


@pytest.mark.docker
def test_full_disk_mid_run_loses_nothing_and_duplicates_no_log(docker_ws: Path, raw_root: Path, tiny_home: Path):
    """The state dir fills up while a job runs: get_job gives an actionable error (the record kept), and once
    space is back the log holds each line once."""
    r = launch("dataset_convert", raw_root, env={"FAKE_TAO_ITER_SECONDS": "0.3"})
    filler = tiny_home / "filler"
    with contextlib.suppress(OSError), open(filler, "wb") as fh:
        while True:
            fh.write(b"\0" * 4096)
    time.sleep(1.5)
    res = mcp_call("get_job", {"job_id": r.job_id})
    if res.is_error:
        assert "space" in res.content[0].text.lower() or "full" in res.content[0].text.lower(), res.content[0].text
    filler.unlink(missing_ok=True)
    s = finish(r.job_id)
    assert s.state == "succeeded", s.verdict
    lines = [ln for ln in (tiny_home / "jobs" / r.job_id / "job.log").read_text().splitlines() if ln.strip()]
    dupes = {ln for ln in lines if lines.count(ln) > 1 and "Epoch" not in ln}
    assert len(lines) >= 3 and not dupes, sorted(dupes)[:5]
