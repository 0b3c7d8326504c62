"""Issue 17 items 13 and 14 against the real Docker engine: a study whose driver died inside a trial's
launch relaunches that trial (it is not a failure, nor one of "3 consecutive failures"), and a study whose
driver cannot work ends failed with the cause, keeping the finished trials' results."""

import os
import signal
import socket
from pathlib import Path

import docker
import pytest
from tao_bevfusion.jobs.context import app_context
from tao_bevfusion.jobs.launch import RunActionInput
from tao_bevfusion.service.jobs import get_job
from tao_bevfusion.service.run import run_action
from tao_bevfusion.studies import study as S
from tao_bevfusion.studies.driver import driver_alive

from tests.test_automl_study import finished, running_trials, study_args, until

pytestmark = pytest.mark.docker


def _kill_driver(study_id: str) -> None:
    driver = get_job(study_id).study.driver
    os.kill(driver["pid"], signal.SIGKILL)
    until(lambda: not get_job(study_id).study.driver["alive"] or None, 10, "the driver to die", 0.2)


def test_a_launch_interrupted_by_a_killed_driver_is_relaunched_not_failed(study_kitti: Path,
                                                                          engine: docker.DockerClient):
    """The driver dies after recording trial 0 (the baseline) and its job, before the container started:
    what it leaves is a trial without a job id and a pending job record whose submitter is dead. The next
    driver relaunches the trial (old code: failed "the launch was interrupted", counted as a failure)."""
    r = run_action(RunActionInput(**study_args(study_kitti, iter_seconds=1.0,
                                               automl={"automl_max_recommendations": 2, "automl_max_concurrent": 1}),
                                  confirm=True))
    container = until(lambda: running_trials(engine, r.job_id), 60, "the first trial container")[0]
    _kill_driver(r.job_id)
    store = app_context().store
    job = store.get(container.labels["tao-bevfusion.job"])
    container.remove(force=True)
    store.update(job.id, state="pending", handle=None, started_at=None,
                 meta=job.meta.model_copy(update={"submitter": f"{socket.gethostname()}:999999999:1"}))
    study = S.load_study(Path(store.get(r.job_id).results_dir), r.job_id)
    S.set_job(study, 0, "")
    s = finished(r.job_id, 180)
    assert s.state == "succeeded" and s.study.progress.failed == 0, s.digest
    first = next(t for t in s.study.trials if t.number == 0)
    assert first.state == "complete" and first.baseline and first.job_id != job.id, first
    assert store.get(job.id).state == "failed"  # the interrupted record says so; the trial ran again


def test_a_study_whose_study_db_is_lost_ends_failed_with_the_cause_in_two_polls(study_kitti: Path):
    """study.db deleted after the first trial finished: the first poll starts a driver that cannot open the
    study, the second poll reports the study failed with that cause (old code: "running" for ever, a driver
    respawned and dead on every poll); the finished trial keeps its result."""
    r = run_action(RunActionInput(**study_args(study_kitti, iter_seconds=0.5,
                                               automl={"automl_max_recommendations": 2, "automl_max_concurrent": 1}),
                                  confirm=True))
    until(lambda: get_job(r.job_id).study.progress.completed >= 1, 120, "the first trial to complete")
    _kill_driver(r.job_id)
    folder = Path(app_context().store.get(r.job_id).results_dir)
    for name in ("study.db", "study.db-wal", "study.db-shm"):
        (folder / name).unlink(missing_ok=True)
    first = get_job(r.job_id)  # poll 1: starts a driver, which cannot work
    assert first.state == "running"
    until(lambda: "error" in (folder / "driver.json").read_text() and not driver_alive(folder), 30,
          "the new driver to give up", 0.3)  # no poll meanwhile
    s = get_job(r.job_id)  # poll 2
    log = app_context().store.get(r.job_id).files(app_context().settings.home).log
    assert s.state == "failed" and "cannot work" in s.verdict.reason, log.read_text()[-3000:]
    assert "Record does not exist" in s.verdict.reason or "study" in s.verdict.reason
    done = [t for t in s.study.trials if t.state == "complete"]
    assert done and done[0].value is not None, s.study.trials
