"""Run safety on the real Docker engine with the stand-in: divergence stops, limits hold, killed runs resume."""

from pathlib import Path

import pytest
from tao_bevfusion.core.calls import parse_call
from tao_bevfusion.core.errors import InputError
from tao_bevfusion.jobs.launch import RunActionInput
from tao_bevfusion.service.jobs import list_jobs
from tao_bevfusion.service.run import run_action

from tests.conftest import copy_sample, finish

pytestmark = pytest.mark.docker


def train(root: Path, env: dict[str, str], epochs: int = 4, **kw):
    return run_action(RunActionInput(action="train", data_root=str(root), gpus=[], automl_policy="off",
                                     overrides={"num_epochs": epochs, "batch_size": 1}, env=env, **kw))


@pytest.fixture
def converted(docker_ws: Path) -> Path:
    root = copy_sample(docker_ws / "kitti")
    job = run_action(RunActionInput(action="dataset_convert", data_root=str(root), gpus=[]))
    assert job.job_id and finish(job.job_id).state == "succeeded"
    return root


def test_nan_loss_stops_the_run_with_the_last_good_checkpoint_and_a_remedy(converted: Path):
    r = train(converted, {"FAKE_TAO_NAN_FROM_EPOCH": "2", "FAKE_TAO_ITER_SECONDS": "0.4"}, epochs=6)
    assert r.job_id
    s = finish(r.job_id)
    assert s.state == "failed" and s.verdict and s.verdict.outcome == "diverged", s.verdict
    assert "epoch 2" in s.verdict.reason and "epoch_1.pth" in s.verdict.reason and "stopped" in s.verdict.reason
    assert s.progress.epoch is not None and s.progress.epoch < 6  # stopped, not trained to the end
    # half the spec's lr (5e-5: batch 1 scaled from the 5.5 reference), from the last good checkpoint
    tool, args = parse_call(s.next_steps[0])
    assert tool == "run_action" and args["resume"] is True and args["parent_job_id"] == r.job_id
    assert args["overrides"] == {"train.optimizer.lr": 2.5e-05,
                                 "train.optimizer.clip_grad": {"max_norm": 10, "norm_type": 2}}


def test_warn_only_reports_divergence_and_runs_to_the_end(converted: Path):
    r = train(converted, {"FAKE_TAO_NAN_FROM_EPOCH": "2"}, epochs=3, on_divergence="warn")
    assert r.job_id
    s = finish(r.job_id)
    assert s.verdict and s.verdict.outcome == "diverged" and "ran on" in s.verdict.reason
    assert s.artifacts["checkpoints"] == ["epoch_1.pth", "epoch_2.pth", "epoch_3.pth"]


def test_wall_clock_limit_stops_keeps_checkpoints_and_names_the_last(converted: Path):
    r = train(converted, {"FAKE_TAO_ITER_SECONDS": "1.5"}, epochs=12, max_hours=0.005)  # 18 s; epoch = 3 s
    assert r.job_id
    s = finish(r.job_id)
    assert s.state == "canceled" and s.verdict and s.verdict.outcome == "limit_reached", s.verdict
    kept = s.artifacts["checkpoints"]
    assert kept and len(kept) < 12 and kept[-1] in s.verdict.reason
    assert s.verdict.next_call and parse_call(s.verdict.next_call)[1]["resume"] is True
    assert s.safety and s.safety["max_hours"] == 0.005


def test_killed_container_resumes_as_a_second_attempt_of_the_same_job(converted: Path):
    r = train(converted, {"FAKE_TAO_KILL_ONCE_AT_EPOCH": "1"}, epochs=3)
    assert r.job_id
    s = finish(r.job_id)
    assert s.state == "succeeded", s.verdict
    assert s.safety and len(s.safety["attempts"]) == 1
    first = s.safety["attempts"][0]
    assert first["exit_code"] == 137 and "killed by a signal from outside" in first["cause"]
    assert first["resumed_from"].endswith("train/epoch_1.pth")
    assert s.artifacts["checkpoints"] == ["epoch_1.pth", "epoch_2.pth", "epoch_3.pth"]


def test_no_retries_leaves_a_killed_run_failed_and_oom_is_never_retried(converted: Path):
    r = train(converted, {"FAKE_TAO_KILL_ONCE_AT_EPOCH": "1"}, epochs=2, max_retries=0)
    assert r.job_id
    s = finish(r.job_id)
    assert s.state == "failed" and s.verdict and s.verdict.outcome == "killed"
    assert not (s.safety or {}).get("attempts")
    r = train(converted, {"FAKE_TAO_FAULT": "fail_at_iter"}, epochs=2)
    assert r.job_id
    s = finish(r.job_id)
    assert s.state == "failed" and not (s.safety or {}).get("attempts")


def test_projection_over_the_gpu_hour_limit_is_refused_before_launch(converted: Path):
    with pytest.raises(InputError) as err:
        train(converted, {}, epochs=50, max_gpu_hours=0.001)
    p = err.value.problems[0]
    assert p.path == "max_gpu_hours" and "projected" in p.message and "raise max_gpu_hours" in p.fix
    assert not list_jobs(action="train")
    dry = train(converted, {}, epochs=50, max_gpu_hours=0.001, dry_run=True)
    assert dry.projection and dry.projection.gpu_hours > 0.001 and "estimate" in dry.projection.source
    assert dry.plan and any(c.name == "budget" and not c.ok for c in dry.plan.preflight)
