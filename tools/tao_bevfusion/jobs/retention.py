"""Checkpoint retention: keep_checkpoints='best_and_last' keeps the best-validated epoch and the last.

A single run applies its policy when it ends well; a study's trials are settled by the study when it ends
(studies/retention.py): pruned and failed trials keep none, completed ones their best and last, and the
study's best checkpoint is never deleted. The bytes freed are recorded with the job (get_job shows them).
`last_checkpoint` is rewritten only if it named a deleted file (it never does: the last epoch is kept).
"""

from pathlib import Path

from tao_bevfusion.core import layout
from tao_bevfusion.jobs.context import AppContext
from tao_bevfusion.jobs.safety import safety_of
from tao_bevfusion.jobs.store import Job

CHECKPOINT_BYTES_ESTIMATE = (
    512 << 20
)  # a BEVFusion epoch_<N>.pth is about 0.5 GB (docs/run-safety.md)


def best_epoch(job: Job) -> int | None:
    scored = [
        (h.AP11, h.epoch) for h in job.metrics.history if h.AP11 is not None and h.epoch is not None
    ]
    scored = [(ap, e) for ap, e in scored if ap == ap]
    return max(scored)[1] if scored else None


def checkpoints(job: Job) -> dict[int, Path]:
    return layout.epoch_checkpoints(layout.train_dir(Path(job.results_dir)))


def keep_set(job: Job, keep_none: bool = False) -> set[int]:
    """Epochs to keep: nothing (keep_none), else the best-validated and the last."""
    found = checkpoints(job)
    if keep_none or not found:
        return set()
    keep = {max(found)}
    best = best_epoch(job)
    if best is not None and best in found:
        keep.add(best)
    return keep


def prune(job: Job, keep: set[int]) -> int:
    """Delete the job's epoch checkpoints not in `keep`; the bytes freed."""
    freed = 0
    for epoch, path in checkpoints(job).items():
        if epoch in keep:
            continue
        try:
            size = path.stat().st_size
            path.unlink()
            freed += size
        except OSError:
            continue
    return freed


def record_freed(ctx: AppContext, job: Job, freed: int) -> None:
    """Add to the job's freed bytes (a terminal record takes it too: this is bookkeeping, not state)."""
    if not freed:
        return
    meta = job.meta.model_copy(update={"freed_bytes": (job.meta.freed_bytes or 0) + freed})
    ctx.store.set_meta(job.id, meta)


def after_run(ctx: AppContext, job: Job) -> None:
    """A single run's own policy, applied once it succeeded (study trials wait for their study)."""
    safety = safety_of(job)
    if (
        safety is None
        or safety.keep_checkpoints != "best_and_last"
        or job.owner_id
        or job.action != "train"
    ):
        return
    if job.state != "succeeded":
        return  # a failed, stopped or diverged run keeps everything: it may be resumed from any epoch
    record_freed(ctx, job, prune(job, keep_set(job)))


def projected_bytes(
    epochs: int, checkpoint_interval: int, trials: int, policy: str
) -> tuple[int, int]:
    """(peak, kept): every checkpoint of every trial until the study settles, and what stays after it."""
    per_trial = max(1, epochs // max(1, checkpoint_interval))
    peak = per_trial * trials * CHECKPOINT_BYTES_ESTIMATE
    kept = peak if policy == "all" else min(per_trial, 2) * trials * CHECKPOINT_BYTES_ESTIMATE
    return peak, kept
