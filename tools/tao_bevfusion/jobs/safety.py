"""Run safety while a job runs and when it ends: limits, divergence, the verdicts they lead to.

`enforce` runs on every refresh of a live job (the job's watchdog, the study driver, get_job): a run past
its wall-clock or GPU-hour limit is stopped (gracefully, after an epoch end that is due within the grace),
a diverged run with on_divergence='stop' is killed at once. `settle` turns the generic verdict of a run the
plugin stopped into its own (diverged / limit_reached) with the last good checkpoint and the next call, and
hands infrastructure failures to jobs/retry.py. Docker and local depend on this; Slurm also carries the
limit in #SBATCH --time and Kubernetes in activeDeadlineSeconds (LaunchRequest.deadline_seconds).
"""

import time
from pathlib import Path
from typing import Any

from tao_bevfusion.backends.base import Backend
from tao_bevfusion.core import layout
from tao_bevfusion.core.calls import call_text
from tao_bevfusion.core.safety import RunSafety
from tao_bevfusion.core.states import Outcome
from tao_bevfusion.evidence.divergence import epoch_of
from tao_bevfusion.evidence.verdict import Verdict
from tao_bevfusion.jobs.context import AppContext
from tao_bevfusion.jobs.store import Job

GRACE_FRACTION = (
    0.05  # wait at most 5% of the limit (and at most GRACE_CAP s) for a checkpoint that is due
)
GRACE_CAP = 300.0


def safety_of(job: Job) -> RunSafety | None:
    return RunSafety.model_validate(job.meta.safety) if job.meta.safety else None


def elapsed_seconds(job: Job, now: float | None = None) -> float:
    """Wall clock since the first attempt started (retries do not reset the budget)."""
    start = job.started_at or job.created_at
    return max(0.0, (now or time.time()) - start)


def _epoch_end_due(job: Job, grace: float) -> bool:
    """True when the current epoch (and so its checkpoint) ends within `grace` seconds."""
    p = job.progress
    if not (p.iters_per_epoch and p.epoch_iteration and p.time_per_iter):
        return False
    left = (p.iters_per_epoch - p.epoch_iteration) * p.time_per_iter
    return 0 <= left <= grace


def limit_passed(job: Job, safety: RunSafety, now: float | None = None) -> bool:
    limit = safety.limit_seconds()
    if limit is None:
        return False
    spent = elapsed_seconds(job, now)
    if spent < limit:
        return False
    grace = min(GRACE_CAP, GRACE_FRACTION * limit)
    return spent >= limit + grace or not _epoch_end_due(job, grace)


def enforce(ctx: AppContext, job: Job, backend: Backend, handle: str) -> Job:
    """Stop a live run that diverged (on_divergence='stop') or passed its limit; record why."""
    safety = safety_of(job)
    if safety is None or job.meta.stop_reason or job.cancel_requested:
        return job
    reason = None
    if safety.on_divergence == "stop" and job.findings.loss_watch.diverged:
        reason = "diverged"
    elif limit_passed(job, safety):
        reason = "limit_reached"
    if reason is None:
        return job
    meta = job.meta.model_copy(update={"stop_reason": reason, "stopped_at": time.time()})
    ctx.store.update(job.id, meta=meta)
    # Killed, not stopped: an imminent checkpoint was already waited for (the grace), and a TERM to the
    # container's PID 1 is ignored, so a graceful stop only adds docker stop's timeout.
    backend.cancel(handle, True)
    return ctx.store.get(job.id)


def last_checkpoint(job: Job, before_epoch: int | None = None) -> tuple[int, Path] | None:
    """The newest epoch_<N>.pth of the job (optionally only epochs before `before_epoch`)."""
    found = layout.epoch_checkpoints(layout.train_dir(Path(job.results_dir)))
    usable = [(e, p) for e, p in found.items() if before_epoch is None or e < before_epoch]
    return usable[-1] if usable else None


def _diverged_verdict(job: Job, verdict: Verdict, stopped: bool) -> Verdict:
    watch = job.findings.loss_watch
    epoch = epoch_of(watch.iteration, job.progress.iters_per_epoch)
    good = last_checkpoint(job, before_epoch=epoch)
    where = (
        f"epoch {epoch}, iteration {watch.iteration}" if epoch else f"iteration {watch.iteration}"
    )
    what = (
        "NaN/inf for several consecutive logs"
        if watch.kind == "non-finite"
        else "far above its median"
    )
    lr = (job.meta.hyper or {}).get("lr") or 2e-4
    args: dict[str, Any] = {"action": "train", "data_root": job.data_root}
    if good:
        args.update(parent_job_id=job.id, resume=True)
    args.update(
        automl_policy="off",
        overrides={
            "train.optimizer.lr": float(f"{float(lr) / 2:.3g}"),
            "train.optimizer.clip_grad": {"max_norm": 10, "norm_type": 2},
        },
    )
    call = call_text("run_action", args)
    named = f"last good checkpoint: {good[1]}" if good else "no checkpoint before the divergence"
    action = "stopped" if stopped else "ran on (on_divergence='warn')"
    reason = (
        f"diverged: the train loss became {what} from {where} (loss {watch.loss}); {action}; {named}; "
        "remedy: half the learning rate and clip gradients harder (max_norm 35 -> 10)"
    )
    return verdict.model_copy(
        update={"outcome": Outcome.DIVERGED, "reason": reason, "next_call": call}
    )


def _limit_verdict(job: Job, verdict: Verdict, safety: RunSafety, via: str) -> Verdict:
    last = last_checkpoint(job)
    hours = elapsed_seconds(job, job.meta.stopped_at) / 3600
    bound = (f"max_hours={safety.max_hours}" if safety.max_hours else "") + (
        f" max_gpu_hours={safety.max_gpu_hours}" if safety.max_gpu_hours else ""
    )
    named = (
        f"last checkpoint: {last[1]} (epoch {last[0]})" if last else "no checkpoint was written yet"
    )
    call = (
        call_text(
            "run_action",
            {
                "action": "train",
                "data_root": job.data_root,
                "parent_job_id": job.id,
                "resume": True,
                "automl_policy": "off",
            },
        )
        if last
        else None
    )
    reason = (
        f"limit reached: stopped {via} after {hours:.2f} h x {safety.gpus} GPU(s) ({bound.strip()}); "
        f"checkpoints kept; {named}"
    )
    return verdict.model_copy(
        update={"outcome": Outcome.LIMIT_REACHED, "reason": reason, "next_call": call}
    )


def safety_verdict(job: Job, verdict: Verdict, backend_error: str | None) -> Verdict:
    """The verdict of a run the plugin (or the scheduler, on its limit) stopped; else the verdict as is."""
    safety = safety_of(job)
    if safety is None:
        return verdict
    reason = job.meta.stop_reason
    if reason == "diverged" or (job.findings.loss_watch.diverged and verdict.outcome != "canceled"):
        return _diverged_verdict(job, verdict, stopped=reason == "diverged")
    if reason == "limit_reached":
        return _limit_verdict(job, verdict, safety, "by the plugin")
    scheduler_limit = backend_error and any(
        w in backend_error for w in ("TIMEOUT", "DeadlineExceeded")
    )
    if scheduler_limit and not job.cancel_requested and (safety.max_hours or safety.max_gpu_hours):
        return _limit_verdict(job, verdict, safety, "by the scheduler's time limit")
    return verdict
