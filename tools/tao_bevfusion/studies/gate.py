"""The review gate of run_action(train): with the AutoML policy on, review first, start the study on confirm.

    review  = run_action(action='train', data_root=..., automl_settings={...})   # launches nothing
    started = run_action(<the same arguments>, confirm=true)                       # a study job, at once

The study is a job of kind 'study' in the job store; its detached driver (tao_bevfusion.studies.driver) runs the
trials, each an ordinary train job owned by the study.
"""

import hashlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from tao_bevfusion.core.calls import call_text
from tao_bevfusion.core.errors import InputError, problem
from tao_bevfusion.core.fsio import atomic_write
from tao_bevfusion.core.layout import SPECS_DIR, StudyFiles, study_folder
from tao_bevfusion.core.paths import host_path, refuse_in_state_dir, refuse_results_overlap
from tao_bevfusion.core.secretkeys import secret_values
from tao_bevfusion.jobs import guards
from tao_bevfusion.jobs.context import AppContext
from tao_bevfusion.jobs.store import Job, JobMeta, new_job_id
from tao_bevfusion.kitti.preflight import check_dataset
from tao_bevfusion.specbuild.build import BuildSpecInput, build_spec
from tao_bevfusion.specbuild.sidecar import read_sidecar
from tao_bevfusion.studies import budget
from tao_bevfusion.studies.plan import StudyPlan, make_plan, plan_review
from tao_bevfusion.studies.review import StudyReview

if TYPE_CHECKING:
    from tao_bevfusion.jobs.launch import RunActionInput

AUTOML_ONLY = ("confirm", "automl_settings")


class GateResult(BaseModel):
    """What the gate answered instead of a direct launch: the review, or the started study."""

    job_id: str | None
    state: str
    review: StudyReview
    routing: dict[str, Any]
    message: str


def _refuse_extras(inp: "RunActionInput", why: str) -> None:
    given = [f for f in AUTOML_ONLY if f in inp.model_fields_set and getattr(inp, f)]
    if given:
        raise InputError(problem(given[0], f"{given[0]} belongs to an AutoML study, but {why}",
                                 "drop it, or call run_action(action='train', ...) with the AutoML policy on "
                                 "(the default) to get a study review first"), headline="nothing was launched")


def _inputs(inp: "RunActionInput", ctx: AppContext) -> tuple[str, str | None]:
    """(data_root, base_spec): a spec_path becomes the trials' base_spec on its own data root."""
    if inp.spec_path:
        spec_path = host_path(inp.spec_path, "spec_path", ctx.settings, kind="file")
        side = read_sidecar(spec_path, ctx.settings.home)
        return side.data_root, str(spec_path)
    if not inp.data_root:
        raise InputError(problem("data_root", "a study needs the dataset root (or a spec_path from build_spec)",
                                 "run_action(action='train', data_root='/abs/kitti', ...)"))
    return inp.data_root, inp.base_spec


def _validate_trial(plan: StudyPlan, ctx: AppContext) -> None:
    """Build the baseline trial's spec now, so a bad override or path is an error before anything runs."""
    report = check_dataset(plan.base["data_root"], "train", ctx=ctx)
    errors = [p for p in report.problems if p.severity == "error"]
    if errors:
        raise InputError([problem(f"data_root ({p.code})", p.message, p.fix) for p in errors],
                         headline="the dataset is not ready for train; nothing was launched")
    fields = plan.trial_input(0, plan.space.baseline(), 0)
    spec_in = {k: v for k, v in fields.items() if k in BuildSpecInput.model_fields}
    spec_in["results_dir"] = None
    # Under specs/: the one part of the state dir where build_spec may write specs (tools/paths.py).
    spec_in["output_path"] = str(ctx.settings.home / SPECS_DIR / plan.study_id / "baseline_check.yaml")
    build_spec(BuildSpecInput.model_validate(spec_in), ctx)


def _confirm_call(inp: "RunActionInput") -> dict[str, Any]:
    args = inp.model_dump(exclude_defaults=True, exclude={"dry_run", "wait_seconds", "encryption_key"})
    args["action"] = inp.action
    if inp.encryption_key:
        args["encryption_key"] = "<the same encryption_key>"  # never echoed back
    return {"tool": "run_action", "arguments": {**args, "confirm": True}}


def gate(inp: "RunActionInput", ctx: AppContext) -> GateResult | None:
    """None: launch directly (not train, or the policy is off). Else the review, or the started study."""
    from tao_bevfusion.policy.automl import resolve_automl_policy

    if inp.action != "train":
        _refuse_extras(inp, f"action is {inp.action}")
        return None
    decision = resolve_automl_policy("train", request=inp.request, automl_policy=inp.automl_policy)
    if decision.route == "direct":
        _refuse_extras(inp, f"the AutoML policy resolved to direct training ({decision.reason})")
        return None
    from tao_bevfusion.studies.driver import ensure_drivers

    ensure_drivers(ctx)
    data_root, base_spec = _inputs(inp, ctx)
    study_id = new_job_id()
    folder = Path(inp.results_dir) if inp.results_dir else study_folder(ctx.settings.home, study_id)
    folder = host_path(str(folder), "results_dir", ctx.settings, must_exist=False)
    refuse_results_overlap(folder, host_path(data_root, "data_root", ctx.settings), ctx.settings)
    refuse_in_state_dir(folder, "results_dir", ctx.settings, allowed="runs")
    plan = make_plan(inp, study_id, folder, data_root, base_spec)
    rv = plan_review(plan, _confirm_call(inp))
    _gpu_hours(rv, data_root, ctx)
    rv.run_safety = budget.review_section(plan, ctx)
    rv.notes.append(f"sampler: {rv.run_safety['sampler']['why']}")
    plan.limits["trial_gpu_hours"] = rv.run_safety["gpu_hours"]["per_trial"]
    routing = decision.model_dump()
    if inp.dry_run or not inp.confirm:
        if not inp.results_dir:
            rv.results_dir = str(study_folder(ctx.settings.home, "<study id, given on confirm>"))
        head = "dry run: " if inp.dry_run else ""
        return GateResult(job_id=None, state="review", review=rv, routing=routing, message=(
            f"{head}AutoML policy is on ({decision.reason.split(';')[0]}): this server runs the study itself. "
            "Nothing was launched. Show the review to the user; start it with the same call plus confirm=true "
            "(or pass automl_policy='off' for one plain training run).\n" + rv.digest()))
    if ctx.store.active_for_results(str(folder)):
        raise InputError(problem("results_dir", f"{folder} is in use by a running job or study",
                                 "use a fresh results_dir"))
    budget.refuse_on_confirm(plan, rv.run_safety)
    guards.refuse_used_study_folder(ctx, folder)
    guards.refuse_other_jobs_folders(ctx, "train", str(folder), plan.base["data_root"])
    _validate_trial(plan, ctx)
    job = start_study(plan, rv, ctx)
    return GateResult(job_id=job.id, state=job.state, review=rv, routing=routing, message=(
        f"study {job.id} started ({plan.trials} trials, {plan.concurrent} at a time); poll "
        f"{call_text('get_job', {'job_id': job.id})}, stop with {call_text('cancel_job', {'job_id': job.id})}"))


def _gpu_hours(rv: StudyReview, data_root: str, ctx: AppContext) -> None:
    """GPU-hours from the GPU-seconds per epoch of the newest succeeded train run on this data root."""
    for job in ctx.store.query(state="succeeded", action="train", limit=50):
        hyper = job.meta.hyper or {}
        epochs, took = hyper.get("epochs"), (job.finished_at or 0) - (job.started_at or 0)
        if job.data_root != data_root or not isinstance(epochs, int) or epochs < 1 or took <= 0:
            continue
        per_epoch = took * int(hyper.get("num_gpus") or 1) / epochs
        rv.estimated_gpu_hours = round(rv.estimated_cost_gpu_epochs * per_epoch / 3600, 3)
        rv.gpu_hours_basis = f"{per_epoch:.0f} GPU-seconds per epoch measured on {job.id}"
        return


def start_study(plan: StudyPlan, rv: StudyReview, ctx: AppContext) -> Job:
    """Record the study job, create its Optuna study, and start its driver. Returns at once."""
    from tao_bevfusion.studies import study as optuna_study
    from tao_bevfusion.studies.driver import spawn_driver

    folder = Path(plan.folder)
    path = plan.save()
    atomic_write(folder / StudyFiles.REVIEW, rv.model_dump_json(indent=1))
    cfg = optuna_study.StudyConfig(settings=plan.settings, space=plan.space, trials=plan.trials,
                                   validation_interval=plan.validation_interval, seed=plan.seed,
                                   scaled_lr=budget.trial_lr(plan))
    optuna_study.create_study(folder, plan.study_id, cfg)
    study_secrets = secret_values(plan.base)  # the study's own log and resources redact the trials' key
    job = ctx.store.create(
        job_id=plan.study_id, kind="study", action="train", backend=plan.base.get("backend", "docker"),
        spec_path=str(path), spec_sha256=hashlib.sha256(path.read_bytes()).hexdigest(), results_dir=str(folder),
        data_root=plan.base["data_root"], plan={}, meta=JobMeta(
            num_epochs=plan.settings.automl_max_epochs, has_secret=bool(study_secrets),
            secrets=study_secrets))
    ctx.store.update(job.id, state="running", started_at=time.time())
    spawn_driver(job.id, folder, ctx)
    return ctx.store.get(job.id)
