"""A study's limits, cost and disk: projected in the review, checked on confirm, held by the driver.

- Review: GPU-hours (trials x epochs x epoch time x GPUs per trial; the epoch time measured on earlier runs
  of the same data and settings, else the documented estimate of jobs/projection.py), the disk the trials'
  checkpoints need at their peak and after retention, and which sampler and why.
- Confirm: refused when not even one trial fits max_gpu_hours, or the disk holds less than the peak.
- Driver: no new trial once the GPU-hours spent plus one more trial would pass max_gpu_hours; at max_hours
  the running trials are stopped; either way the study ends with its best trial so far.
- End: keep_checkpoints='best_and_last' (the trials' default) leaves completed trials their best-validated
  and last epochs, pruned/failed/stopped trials none; the study's best checkpoint is never deleted.
"""

import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tao_bevfusion.core.errors import InputError, problem
from tao_bevfusion.core.safety import RunSafety
from tao_bevfusion.jobs import retention
from tao_bevfusion.jobs.context import AppContext
from tao_bevfusion.jobs.projection import CostProjection, project
from tao_bevfusion.jobs.store import Job
from tao_bevfusion.specbuild.lr_scaling import REFERENCE_BATCH_PER_GPU, scaled_lr
from tao_bevfusion.studies import sampler_choice

if TYPE_CHECKING:
    from tao_bevfusion.studies.loop import StudyLoop
    from tao_bevfusion.studies.plan import StudyPlan

BATCH_KEY = "dataset.train_dataset.batch_size"


def limits_of(plan: "StudyPlan") -> RunSafety:
    return RunSafety.model_validate(
        {
            **plan.limits,
            "gpus": max(1, len(plan.gpu_slots[0]) if plan.gpu_slots and plan.gpu_slots[0] else 1),
        }
    )


def _trial_spec(plan: "StudyPlan") -> dict[str, Any]:
    base = plan.space.baseline()
    batch = base.get(BATCH_KEY, plan.overrides.get(BATCH_KEY, REFERENCE_BATCH_PER_GPU))
    gpus = int(plan.base.get("num_gpus") or 1)
    return {
        "dataset": {"train_dataset": {"batch_size": batch}},
        "train": {
            "num_gpus": gpus,
            "num_nodes": int(plan.base.get("num_nodes") or 1),
            "num_epochs": plan.settings.automl_max_epochs,
        },
    }


def trial_lr(plan: "StudyPlan") -> float | None:
    """The linearly scaled lr for the trials' global batch (enqueued as a start-up trial)."""
    return scaled_lr(_trial_spec(plan))


def trial_cost(plan: "StudyPlan", ctx: AppContext) -> CostProjection:
    spec = _trial_spec(plan)
    hyper = {
        "batch_size": spec["dataset"]["train_dataset"]["batch_size"],
        "num_gpus": spec["train"]["num_gpus"],
    }
    return project(spec, str(plan.base["data_root"]), spec["train"]["num_nodes"], ctx.store, hyper)


def review_section(plan: "StudyPlan", ctx: AppContext) -> dict[str, Any]:
    """What the review adds: sampler and why, GPU-hours, disk, limits."""
    choice = sampler_choice.choose(plan.settings.automl_algorithm, plan.space, plan.trials)
    cost = trial_cost(plan, ctx)
    interval = int(plan.validation_interval or 1)
    peak, kept = retention.projected_bytes(
        plan.settings.automl_max_epochs,
        interval,
        plan.trials,
        str(plan.base.get("keep_checkpoints") or "best_and_last"),
    )
    limits = limits_of(plan)
    fits = (
        int(limits.max_gpu_hours // cost.gpu_hours)
        if limits.max_gpu_hours and cost.gpu_hours
        else None
    )
    return {
        "sampler": choice.model_dump(),
        "scaled_lr_trial": trial_lr(plan),
        "gpu_hours": {
            "per_trial": cost.gpu_hours,
            "all_trials_at_most": round(cost.gpu_hours * plan.trials, 3),
            "epoch_seconds": cost.epoch_seconds,
            "source": cost.source,
        },
        "disk": {
            "peak_bytes": peak,
            "kept_bytes": kept,
            "free_bytes": _free(Path(plan.folder)),
            "note": f"~{retention.CHECKPOINT_BYTES_ESTIMATE >> 20} MiB per checkpoint (estimate)",
        },
        "limits": {
            "max_hours": limits.max_hours,
            "max_gpu_hours": limits.max_gpu_hours,
            "trials_that_fit": fits,
        },
    }


def _free(folder: Path) -> int:
    probe = next((p for p in [folder, *folder.parents] if p.exists()), Path("/"))
    return shutil.disk_usage(probe).free


def refuse_on_confirm(plan: "StudyPlan", section: dict[str, Any]) -> None:
    """Before the study starts: one trial must fit the GPU-hour limit, and the disk must hold the peak."""
    per_trial, limit = section["gpu_hours"]["per_trial"], section["limits"]["max_gpu_hours"]
    if limit is not None and per_trial > limit:
        raise InputError(
            problem(
                "max_gpu_hours",
                f"one trial is projected at {per_trial:.2f} GPU-hours "
                f"({section['gpu_hours']['source']}), above max_gpu_hours={limit:g}",
                f"raise max_gpu_hours to at least {per_trial:.2f} (x trials for the whole study), "
                "or lower automl_max_epochs",
                code="OVER_BUDGET",
            ),
            headline="projected cost above the limit; nothing was launched",
        )
    disk = section["disk"]
    if disk["free_bytes"] < disk["peak_bytes"]:
        raise InputError(
            problem(
                "results_dir",
                f"the study's checkpoints need about {disk['peak_bytes'] >> 30} GiB "
                f"at their peak; {disk['free_bytes'] >> 30} GiB are free under {plan.folder}",
                "free space, choose a results_dir on a larger disk, or lower "
                "automl_max_recommendations / automl_max_epochs",
                code="DISK_TOO_SMALL",
            ),
            headline="not enough disk for the study; nothing was launched",
        )


def _trial_jobs(loop: "StudyLoop") -> list[Job]:
    return loop.ctx.store.query(owner_id=loop.id, limit=1000)


def gpu_hours_spent(loop: "StudyLoop", now: float | None = None) -> float:
    gpus = limits_of(loop.plan).gpus
    now = now or time.time()
    spent = sum(((j.finished_at or now) - j.started_at) for j in _trial_jobs(loop) if j.started_at)
    return spent * gpus / 3600


def _measured_trial_hours(loop: "StudyLoop") -> float | None:
    done = [
        j for j in _trial_jobs(loop) if j.state == "succeeded" and j.started_at and j.finished_at
    ]
    if not done:
        return None
    return max((j.finished_at or 0) - (j.started_at or 0) for j in done) / 3600


def hold_launches(loop: "StudyLoop") -> bool:
    """True when the next trial would pass the study's GPU-hour limit (or its wall clock has passed)."""
    limits = limits_of(loop.plan)
    if limits.max_gpu_hours is None and limits.max_hours is None:
        return False
    if wall_clock_passed(loop):
        return True
    if limits.max_gpu_hours is None:
        return False
    hours = _measured_trial_hours(loop)
    next_trial = (
        (hours * limits.gpus)
        if hours is not None
        else float(loop.plan.limits.get("trial_gpu_hours", 0))
    )
    running = len(loop.running())
    if gpu_hours_spent(loop) + next_trial * (running + 1) > limits.max_gpu_hours:
        loop.stopped = loop.stopped or (
            f"limit reached: no new trial (max_gpu_hours={limits.max_gpu_hours:g}, "
            f"{gpu_hours_spent(loop):.3f} spent); the best trial so far is the result"
        )
        return True
    return False


def wall_clock_passed(loop: "StudyLoop") -> bool:
    limits = limits_of(loop.plan)
    if limits.max_hours is None or loop.job.started_at is None:
        return False
    if time.time() - loop.job.started_at < limits.max_hours * 3600:
        return False
    loop.stopped = (
        loop.stopped
        or f"limit reached: max_hours={limits.max_hours:g}; the best trial so far is the result"
    )
    return True


def settle_checkpoints(loop: "StudyLoop", best_job_id: str | None, best_epoch: int | None) -> int:
    """Apply the trials' keep policy now that the study needs none of them; the bytes freed."""
    freed = 0
    for job in _trial_jobs(loop):
        policy = (job.meta.safety or {}).get("keep_checkpoints", "all")
        if policy != "best_and_last" or not job.terminal:
            continue
        keep_none = job.state != "succeeded" and job.id != best_job_id
        keep = retention.keep_set(job, keep_none=keep_none)
        if job.id == best_job_id and best_epoch is not None:
            keep.add(best_epoch)  # the study's best checkpoint is never deleted
        got = retention.prune(job, keep)
        retention.record_freed(loop.ctx, job, got)
        freed += got
    study = loop.ctx.store.get(loop.id)
    retention.record_freed(loop.ctx, study, freed)
    return freed
