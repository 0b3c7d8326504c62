"""An AutoML study whose trials run on the Slurm backend (issue 12 item 4), on the real single-host cluster:
each trial is a 2-node Slurm job; with two trials allowed at once on a two-node cluster, the second waits in
the scheduler's queue and is reported as pending; the study ends with every trial scored.

The first trial is held at its start (the stand-in's FAKE_TAO_HOLD_FILE) until the test has seen the second
one wait: how long a trial runs is the test's decision, not a guess against the driver's refresh period
(a trial of the stand-in lasts about as long as one driver tick, so the wait was seen only sometimes)."""

import subprocess
import time
from pathlib import Path

import pytest
from tao_bevfusion.core.layout import job_name
from tao_bevfusion.jobs.context import app_context
from tao_bevfusion.jobs.launch import RunActionInput
from tao_bevfusion.service.jobs import get_job
from tao_bevfusion.service.run import run_action
from tao_bevfusion.studies.driver import tick_seconds

from tests.test_automl_study import finished, settings, until
from tests.test_slurm_backend import OPTS, cluster_ws  # noqa: F401 - fixtures
from tests.test_slurm_real import slurm  # noqa: F401 - the cluster fixture

pytestmark = pytest.mark.docker
HOLD = "hold-trials"  # in the data root, which every container sees at /data


def _look(study_id: str) -> tuple[dict[str, str], dict[str, str | None]]:
    """The trials' states (the store, read first), then Slurm's state of each trial's job; the invariants are
    checked at every look."""
    trials = {j.id: str(j.state) for j in app_context().store.query(owner_id=study_id, limit=10)}
    out = subprocess.run(["squeue", "-h", "-o", "%j %T"], capture_output=True, text=True, check=True).stdout
    named = dict(line.split(maxsplit=1) for line in out.splitlines() if line.strip())
    queue = {job_id: named.get(job_name(job_id)) for job_id in trials}
    assert sum(s in ("pending", "running") for s in trials.values()) <= 2, trials  # automl_max_concurrent
    # Read after the store: a trial Slurm still holds in its queue is never reported running.
    assert not [j for j, s in queue.items() if s == "PENDING" and trials[j] == "running"], (trials, queue)
    return trials, queue


def _one_runs_one_waits(trials: dict[str, str], queue: dict[str, str | None]) -> tuple[str, str] | None:
    running = [j for j in trials if trials[j] == "running" and queue[j] == "RUNNING"]
    waiting = [j for j in trials if trials[j] == "pending" and queue[j] == "PENDING"]
    return (running[0], waiting[0]) if len(trials) == 2 and running and waiting else None


def test_a_study_submits_its_trials_to_slurm(cluster_ws: Path) -> None:  # noqa: F811
    hold = cluster_ws / HOLD
    hold.touch()
    args = {"action": "train", "data_root": str(cluster_ws), "backend": "slurm", "num_nodes": 2, "num_gpus": 2,
            "backend_options": OPTS, "env": {"FAKE_TAO_HOLD_FILE": f"/data/{HOLD}"},
            "overrides": {"batch_size": 1},
            "automl_settings": settings(automl_max_recommendations=3, automl_max_concurrent=2, automl_max_epochs=2)}
    review = run_action(RunActionInput.model_validate(args))
    assert review.state == "review" and review.job_id is None
    started = run_action(RunActionInput.model_validate({**args, "confirm": True}))
    assert started.state == "running" and started.job_id
    study_id = started.job_id
    try:
        first, second = until(lambda: _one_runs_one_waits(*_look(study_id)), 90,
                              "one trial running and the other queued by Slurm and reported pending", every=0.2)
        held_until = time.monotonic() + 2 * tick_seconds() + 1  # the driver looks at both trials meanwhile
        while time.monotonic() < held_until:
            trials, queue = _look(study_id)
            assert set(trials) == {first, second}, trials  # no third trial while two are live
            assert trials[second] == "pending" and queue[second] == "PENDING", (trials, queue)
            time.sleep(0.2)
    finally:
        hold.unlink()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and get_job(study_id).state == "running":
        _look(study_id)
        time.sleep(0.2)
    s = finished(study_id, 120)
    assert s.state == "succeeded", s.digest
    trials = app_context().store.query(owner_id=study_id, limit=10)
    assert len(trials) == 3 and {t.backend for t in trials} == {"slurm"}
    assert all(t.verdict.get("outcome") == "succeeded" for t in trials)
    assert until(lambda: s.study and s.study.best, 1, "a best trial")
