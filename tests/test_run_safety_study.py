"""Run safety in AutoML studies on the real Docker engine with the stand-in: the review's sampler, cost and
disk; retention leaving only the checkpoints a finished study may hand on; a study under a GPU-hour limit
ending with its best so far."""

from pathlib import Path

import pytest
from tao_bevfusion.core import layout
from tao_bevfusion.core.errors import InputError
from tao_bevfusion.jobs.context import app_context
from tao_bevfusion.jobs.launch import RunActionInput
from tao_bevfusion.service.jobs import get_job
from tao_bevfusion.service.run import run_action

from tests.test_automl_study import until

pytestmark = pytest.mark.docker
LR, WD = "train.optimizer.lr", "train.optimizer.weight_decay"


def study(root: Path, automl: dict[str, object], **kw: object) -> dict[str, object]:
    return {"action": "train", "data_root": str(root), "gpus": [], "overrides": {"batch_size": 1},
            "env": {"FAKE_TAO_ITER_SECONDS": "0.1"}, "automl_settings": {
                "automl_max_concurrent": 2, "automl_hyperparameters": [LR, WD], **automl}, **kw}


def test_review_says_sampler_cost_disk_and_enqueues_the_scaled_lr(study_kitti: Path) -> None:
    r = run_action(RunActionInput(**study(study_kitti, {"automl_algorithm": "bayesian",
                                                      "automl_max_recommendations": 8})))
    safety = r.review and r.review.run_safety
    assert safety and safety["sampler"]["name"] in ("GPSampler", "TPESampler(multivariate)")
    assert "numeric" in safety["sampler"]["why"] and any(n.startswith("sampler:") for n in r.review.notes)
    assert safety["scaled_lr_trial"] == 5e-05  # batch 1 x 1 GPU vs the 5.5 reference 4 x 1 at 2e-4
    assert safety["gpu_hours"]["per_trial"] > 0 and "estimate" in safety["gpu_hours"]["source"]
    assert safety["disk"]["peak_bytes"] > safety["disk"]["kept_bytes"] > 0
    with pytest.raises(InputError) as err:
        run_action(RunActionInput(**study(study_kitti, {"automl_max_recommendations": 4}, max_gpu_hours=0.0001,
                                          confirm=True)))
    assert err.value.problems[0].path == "max_gpu_hours"


def test_finished_study_holds_only_the_checkpoints_it_may_hand_on(study_kitti: Path) -> None:
    args = study(study_kitti, {"automl_algorithm": "asha", "automl_max_recommendations": 4, "automl_max_epochs": 4,
                             "automl_reduction_factor": 2}, confirm=True)
    started = run_action(RunActionInput(**args))
    assert started.job_id
    s = until(lambda: (x := get_job(started.job_id)).state not in ("pending", "running") and x, 240, "study")
    assert s.state == "succeeded" and s.study and s.study.best, s
    store = app_context().store
    trials = store.query(owner_id=started.job_id, limit=100)
    for job in trials:
        kept = layout.epoch_checkpoints(layout.train_dir(Path(job.results_dir)))
        if job.state == "succeeded":
            assert 1 <= len(kept) <= 2 and max(kept) == 4, (job.id, kept)
        elif job.id != s.study.best.job_id:
            assert kept == {}, (job.id, job.state, kept)
    assert Path(s.study.best.checkpoint).is_file()  # the study's best is never deleted
    assert s.safety and s.safety["freed_bytes"] > 0


def test_study_under_a_gpu_hour_limit_ends_with_its_best_so_far(study_kitti: Path) -> None:
    args = study(study_kitti, {"automl_algorithm": "random", "automl_max_recommendations": 8, "automl_max_epochs": 2,
                             "automl_max_concurrent": 1}, max_gpu_hours=0.004, confirm=True)  # 14.4 GPU-seconds
    args["env"] = {"FAKE_TAO_ITER_SECONDS": "1.0"}  # trials of >= 4 s whatever the machine's load: the limit binds
    started = run_action(RunActionInput(**args))
    assert started.job_id
    s = until(lambda: (x := get_job(started.job_id)).state not in ("pending", "running") and x, 240, "study")
    assert s.state == "succeeded" and s.verdict and "limit reached" in s.verdict.reason, s.verdict
    assert s.study and s.study.best and 1 <= len(s.study.trials) < 8


def test_a_diverging_trial_is_stopped_at_once_and_reported_as_diverged(study_kitti: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAO_BEVFUSION_AUTOML_SEED", "7")
    args = study(study_kitti, {"automl_algorithm": "random", "automl_max_recommendations": 4, "automl_max_epochs": 6,
                             "custom_param_ranges": {LR: {"min": 1e-3, "max": 1e-2}}},
                 env={"FAKE_TAO_ITER_SECONDS": "0.3", "FAKE_TAO_NAN_FROM_EPOCH": "1", "FAKE_TAO_NAN_LR_ABOVE": "9e-4"},
                 confirm=True)
    started = run_action(RunActionInput(**args))
    assert started.job_id
    s = until(lambda: (x := get_job(started.job_id)).state not in ("pending", "running") and x, 240, "study")
    trials = app_context().store.query(owner_id=started.job_id, limit=100)
    diverged = [j for j in trials if (j.meta.hyper or {}).get("lr", 0) > 9e-4]
    assert diverged, [j.meta.hyper for j in trials]
    assert all(job.verdict.get("outcome") == "diverged" for job in diverged), [j.verdict for j in diverged]
    stopped = [j for j in diverged if j.meta.stop_reason == "diverged" and (j.progress.epoch or 0) < 6]
    assert stopped, "no diverging trial was stopped before its last epoch"
    assert s.study and any("diverged" in (t.reason or "") for t in s.study.trials)
