"""Run safety on the real local Slurm cluster (scripts/slurm_cluster.sh), docker runtime, the stand-in image:
a diverged run, a run at its limit (#SBATCH --time from max_hours) and a killed run that resumes, and why a
pending job waits."""

import subprocess
import time
from pathlib import Path

import pytest
from tao_bevfusion.jobs.launch import RunActionInput
from tao_bevfusion.service.jobs import cancel_job, get_job
from tao_bevfusion.service.run import run_action

from tests.conftest import finish
from tests.test_slurm_backend import OPTS, cluster_ws  # noqa: F401 - the cluster workspace fixture
from tests.test_slurm_real import slurm  # noqa: F401 - the cluster fixture

pytestmark = pytest.mark.docker


def _train(root: Path, env: dict[str, str], epochs: int, **kw: object):
    fields: dict[str, object] = dict(action="train", data_root=str(root), backend="slurm", automl_policy="off",
                                     overrides={"num_epochs": epochs, "batch_size": 1}, backend_options=OPTS,
                                     env=env, gpus=[])
    fields.update(kw)
    return run_action(RunActionInput.model_validate(fields))


def test_diverged_run_is_stopped_on_slurm(cluster_ws: Path) -> None:  # noqa: F811
    out = _train(cluster_ws, {"FAKE_TAO_NAN_FROM_EPOCH": "2", "FAKE_TAO_ITER_SECONDS": "0.5"}, epochs=8)
    assert out.job_id
    s = finish(out.job_id)
    assert s.state == "failed" and s.verdict and s.verdict.outcome == "diverged", s.verdict
    assert "epoch_1.pth" in s.verdict.reason and s.progress.epoch is not None and s.progress.epoch < 8
    assert s.next_steps[0].startswith("run_action(") and "resume" in s.next_steps[0]


def test_limit_is_in_the_sbatch_script_and_the_run_stops_at_it(cluster_ws: Path) -> None:  # noqa: F811
    out = _train(cluster_ws, {"FAKE_TAO_ITER_SECONDS": "1.5"}, epochs=8, max_hours=0.003)
    assert out.job_id and out.plan
    assert "#SBATCH --time=1" in out.plan.model_dump()["script"]
    s = finish(out.job_id)
    assert s.state == "canceled" and s.verdict and s.verdict.outcome == "limit_reached", s.verdict
    assert s.artifacts["checkpoints"] and s.artifacts["checkpoints"][-1] in s.verdict.reason


def test_killed_run_resumes_as_a_second_attempt_on_slurm(cluster_ws: Path) -> None:  # noqa: F811
    out = _train(cluster_ws, {"FAKE_TAO_KILL_ONCE_AT_EPOCH": "1"}, epochs=3)
    assert out.job_id
    s = finish(out.job_id)
    assert s.state == "succeeded", s.verdict
    assert s.safety and len(s.safety["attempts"]) == 1 and s.safety["attempts"][0]["exit_code"] == 137
    assert s.safety["attempts"][0]["resumed_from"].endswith("epoch_1.pth")
    assert s.artifacts["checkpoints"] == ["epoch_1.pth", "epoch_2.pth", "epoch_3.pth"]


def test_pending_job_says_why_it_waits(cluster_ws: Path) -> None:  # noqa: F811
    subprocess.run(["scontrol", "update", "PartitionName=debug", "MaxTime=1"], check=True, capture_output=True)
    try:
        out = _train(cluster_ws, {}, epochs=2, max_hours=2)
        assert out.job_id
        deadline = time.monotonic() + 20
        while True:
            s = get_job(out.job_id)
            if (s.safety or {}).get("waiting") or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert s.state == "pending" and s.safety
        waiting = s.safety["waiting"]
        assert "reason Partition" in waiting and "partition debug" in waiting and "(" in waiting  # code + meaning
        assert cancel_job(out.job_id).state == "canceled"
    finally:
        subprocess.run(["scontrol", "update", "PartitionName=debug", "MaxTime=INFINITE"], check=True)
