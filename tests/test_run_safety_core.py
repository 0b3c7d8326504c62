"""Run safety without an engine: divergence thresholds, each new field's bad input, the LR scaling rule, the
sampler choice, retention's keep set and the cost projection."""

import json
import math
from pathlib import Path

import pytest
from pydantic import ValidationError
from tao_bevfusion.core.errors import InputError
from tao_bevfusion.core.safety import RunSafety, SafetyInput
from tao_bevfusion.evidence.divergence import EXPLODED_RUN, MIN_HISTORY, NONFINITE_RUN, LossWatch, epoch_of, observe_all
from tao_bevfusion.evidence.models import Cursor, Findings, RunMetrics, RunProgress
from tao_bevfusion.evidence.scan import scan_status
from tao_bevfusion.evidence.verdict import Verdict
from tao_bevfusion.jobs.launch import RunActionInput
from tao_bevfusion.jobs.projection import CostProjection, refuse_over_limit
from tao_bevfusion.jobs.retry import infrastructure_cause
from tao_bevfusion.service.run import run_action
from tao_bevfusion.service.specs import build_spec
from tao_bevfusion.specbuild.build import BuildSpecInput
from tao_bevfusion.studies.sampler_choice import choose, scaled_lr_trial, startup_for_budget
from tao_bevfusion.studies.settings import parse_settings
from tao_bevfusion.studies.space import build_space

LR, WD = "train.optimizer.lr", "train.optimizer.weight_decay"


def test_nonfinite_losses_diverge_after_the_threshold_with_the_first_bad_iteration() -> None:
    watch = LossWatch()
    observe_all(watch, [(1, 3.0), (2, 2.5), (3, math.nan), (4, 2.4)])  # one NaN then finite: not diverged
    assert not watch.diverged
    observe_all(watch, [(5 + i, math.inf if i % 2 else math.nan) for i in range(NONFINITE_RUN)])
    assert watch.diverged and watch.kind == "non-finite" and watch.iteration == 5 and watch.last_good_iter == 4
    assert epoch_of(5, 2) == 3


def test_explosion_needs_history_and_a_run_far_above_the_median() -> None:
    early = LossWatch()
    observe_all(early, [(1, 1.0), *((i, 1e6) for i in range(2, 10))])  # no history yet: a spike is not judged
    assert not early.diverged
    watch = LossWatch()
    observe_all(watch, [(i, 2.0) for i in range(1, MIN_HISTORY + 1)])
    observe_all(watch, [(100 + i, 50.0) for i in range(EXPLODED_RUN - 1)])
    assert not watch.diverged
    observe_all(watch, [(200, 50.0)])
    assert watch.diverged and watch.kind == "exploded" and watch.iteration == 100


def test_nonfinite_grad_norms_of_the_loss_scaler_do_not_count(tmp_path: Path) -> None:
    status = tmp_path / "status.json"
    lines = [{"mode": "train", "cur_iter": i, "loss": 3.0 / i, "grad_norm": math.nan} for i in range(1, 8)]
    status.write_text("".join(json.dumps(x) + "\n" for x in lines))
    findings = Findings()
    scan_status(status, Cursor(), findings, RunProgress(), RunMetrics())
    assert findings.loss_watch.finite_seen == 7 and not findings.loss_watch.diverged


@pytest.mark.parametrize(("field", "value", "says"), [
    ("max_hours", 0, "above 0"), ("max_hours", -1, "above 0"), ("max_hours", 1e6, "90 days"),
    ("max_gpu_hours", 0, "above 0"), ("max_gpu_hours", 1e9, "at most"), ("max_retries", 11, "0-10"),
    ("max_retries", -1, "0-10"), ("keep_checkpoints", "some", "best_and_last"), ("on_divergence", "halt", "warn")])
def test_bad_safety_fields_are_named_with_the_fix(field: str, value: object, says: str) -> None:
    with pytest.raises(ValidationError) as err:
        SafetyInput.model_validate({field: value})
    e = err.value.errors()[0]
    assert e["loc"] == (field,) and says in e["msg"]


def test_bad_safety_field_through_run_action_launches_nothing(kitti: Path) -> None:
    with pytest.raises(ValidationError):
        RunActionInput(action="train", data_root=str(kitti), max_retries=11)
    with pytest.raises(InputError) as err:
        run_action(RunActionInput(action="train", data_root=str(kitti), backend="kubernetes", automl_policy="off",
                                  backend_options={"queue": "Team_A"}, dry_run=True))
    assert err.value.problems[0].path == "backend_options.queue"


def test_limits_and_the_projection_refusal() -> None:
    safety = RunSafety(max_hours=2, max_gpu_hours=4, gpus=4)
    assert safety.limit_seconds() == 3600  # 4 GPU-hours on 4 GPUs: one hour of wall clock
    cost = CostProjection(gpu_hours=8, hours=2, epoch_seconds=720, epochs=10, gpus=4, source="estimate (...)")
    with pytest.raises(InputError) as err:
        refuse_over_limit(cost, safety)
    p = err.value.problems[0]
    assert p.path == "max_gpu_hours" and "8.00" in p.message and "num_epochs to 5" in p.fix


def test_infrastructure_causes_and_program_failures() -> None:
    from tao_bevfusion.jobs.store import Job

    job = Job(id="j0123456789abcdef", action="train", backend="docker", state="running", spec_path="-",
              spec_sha256="-", results_dir="/r", data_root="/d", created_at=0, updated_at=0)
    killed = Verdict(outcome="killed", reason="killed by a signal from outside (exit 137)", exit_code=137)
    assert infrastructure_cause(job, killed, None)
    assert infrastructure_cause(job, Verdict(outcome="failed", reason="x"), "Slurm NODE_FAIL (sacct)")
    assert infrastructure_cause(job, Verdict(outcome="lost", reason="gone"), None)
    evicted = "Job failed: PodFailurePolicy Pod perception/x has condition DisruptionTarget matching FailJob rule"
    assert infrastructure_cause(job, Verdict(outcome="failed", reason="x"), evicted)
    oom = Verdict(outcome="killed", reason="killed by the out-of-memory killer (OOMKilled)")
    assert infrastructure_cause(job, oom, None) is None
    assert infrastructure_cause(job, Verdict(outcome="failed", reason="CUDA out of memory"), None) is None
    stopped = job.model_copy(update={"meta": job.meta.model_copy(update={"stop_reason": "limit_reached"})})
    assert infrastructure_cause(stopped, killed, None) is None


def test_lr_follows_the_global_batch_unless_turned_off(kitti: Path) -> None:
    def lr_of(**kw: object) -> tuple[float, list[str]]:
        built = build_spec(BuildSpecInput.model_validate({"action": "train", "data_root": str(kitti), **kw}))
        return built.spec["train"]["optimizer"]["lr"], [c.reason for c in built.changes if c.path == LR]

    lr, why = lr_of(overrides={"batch_size": 1})
    assert lr == 5e-05 and "linear scaling" in why[0] and "reference 4" in why[0]
    assert lr_of(overrides={"batch_size": 4})[0] == 2e-4  # the reference global batch: unchanged
    assert lr_of(overrides={"batch_size": 1}, scale_lr=False) == (2e-4, [])
    assert lr_of(overrides={"batch_size": 1, "learning_rate": 1e-4})[0] == 1e-4


def test_sampler_choice_by_the_space_and_budget() -> None:
    numeric = build_space(parse_settings({"automl_hyperparameters": [LR, WD]}))
    assert choose("bayesian", numeric, 8, gp=True).name == "GPSampler"
    assert "torch" in choose("bayesian", numeric, 8, gp=False).why
    assert choose("bayesian", numeric, 8, gp=False).name == "TPESampler(multivariate)"
    assert choose("asha", numeric, 8).name == "RandomSampler"
    assert [startup_for_budget(n) for n in (4, 8, 12, 20, 40)] == [2, 2, 3, 5, 5]
    trial = scaled_lr_trial(numeric, 5e-5)
    assert trial is not None and trial[LR] == 5e-5 and trial[WD] == numeric.baseline()[WD]
    assert scaled_lr_trial(numeric, numeric.baseline()[LR]) is None
