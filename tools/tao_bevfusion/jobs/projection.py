"""GPU-hour projection of a train plan, and the refusal of a launch whose projection exceeds its limit.

The epoch time comes from earlier train jobs of the same data, batch size and GPU count when there are any
(measured: their run time / epochs done); otherwise from a documented estimate of ESTIMATE_SECONDS_PER_ITER
seconds per iteration (BEVFusion camera+LiDAR on one A100-class GPU; docs/run-safety.md), with the iteration
count read from the dataset's ImageSets/train.txt. The projection says which it used.
"""

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from tao_bevfusion.core.dotted import get_path
from tao_bevfusion.core.errors import InputError, problem
from tao_bevfusion.core.safety import RunSafety
from tao_bevfusion.jobs.store import Job, JobStore

ESTIMATE_SECONDS_PER_ITER = 1.2
DEFAULT_FRAMES = 3712  # KITTI's standard train split, when the dataset's ImageSets cannot be read


class CostProjection(BaseModel):
    gpu_hours: float = Field(description="nodes x GPUs x projected hours.")
    hours: float = Field(description="Projected wall-clock hours.")
    epoch_seconds: float = Field(description="Seconds per epoch used for the projection.")
    epochs: int
    gpus: int = Field(description="nodes x GPUs per node.")
    source: str = Field(
        description="Where the epoch time came from: 'measured on <job>' or 'estimate (...)'."
    )


def _frames(data_root: str) -> int:
    try:
        lines = (Path(data_root) / "ImageSets" / "train.txt").read_text().split()
    except OSError:
        return DEFAULT_FRAMES
    return len(lines) or DEFAULT_FRAMES


def _same_setup(job: Job, data_root: str, hyper: dict[str, Any]) -> bool:
    theirs = job.meta.hyper or {}
    return (
        job.action == "train"
        and job.data_root == data_root
        and job.started_at is not None
        and job.finished_at is not None
        and all(theirs.get(k) == hyper.get(k) for k in ("batch_size", "num_gpus"))
    )


def measured_epoch_seconds(
    store: JobStore, data_root: str, hyper: dict[str, Any]
) -> tuple[float, str] | None:
    """Median epoch time of recent finished train jobs with the same data, batch size and GPUs."""
    samples = []
    for job in store.query(action="train", limit=200):
        if not _same_setup(job, data_root, hyper) or job.kind != "run":
            continue
        done = job.progress.epoch or 0
        if done >= 1 and job.finished_at and job.started_at:
            samples.append(((job.finished_at - job.started_at) / done, job.id))
        if len(samples) >= 5:
            break
    if not samples:
        return None
    samples.sort()
    seconds, job_id = samples[len(samples) // 2]
    return (
        seconds,
        f"measured on {job_id} ({len(samples)} earlier run(s) of the same data, batch and GPUs)",
    )


def project(
    spec: dict[str, Any],
    data_root: str,
    nodes: int,
    store: JobStore,
    hyper: dict[str, Any],
    epochs: int | None = None,
) -> CostProjection:
    gpus_per_node = int(get_path(spec, "train.num_gpus") or 1)
    gpus = max(1, nodes) * gpus_per_node
    epochs = epochs or int(get_path(spec, "train.num_epochs") or 10)
    found = measured_epoch_seconds(store, data_root, hyper)
    if found:
        epoch_seconds, source = found
    else:
        batch = int(get_path(spec, "dataset.train_dataset.batch_size") or 1)
        iters = max(1, _frames(data_root) // max(1, batch * gpus))
        epoch_seconds = iters * ESTIMATE_SECONDS_PER_ITER
        source = (
            f"estimate ({iters} iterations/epoch x {ESTIMATE_SECONDS_PER_ITER} s/iteration; no earlier run of "
            "the same data, batch size and GPUs)"
        )
    hours = epochs * epoch_seconds / 3600
    return CostProjection(
        gpu_hours=round(hours * gpus, 3),
        hours=round(hours, 3),
        epoch_seconds=round(epoch_seconds, 2),
        epochs=epochs,
        gpus=gpus,
        source=source,
    )


def refuse_over_limit(cost: CostProjection, safety: RunSafety, what: str = "the run") -> None:
    """InputError before launch when the projection exceeds max_gpu_hours."""
    limit = safety.max_gpu_hours
    if limit is None or cost.gpu_hours <= limit:
        return
    fit = max(0, int(limit * 3600 / (cost.epoch_seconds * cost.gpus)))
    raise InputError(
        problem(
            "max_gpu_hours",
            f"{what} is projected at {cost.gpu_hours:.2f} GPU-hours ({cost.epochs} "
            f"epochs x {cost.epoch_seconds:.0f} s x {cost.gpus} GPU(s); {cost.source}), above "
            f"max_gpu_hours={limit:g}",
            f"raise max_gpu_hours to at least {cost.gpu_hours:.2f}, or lower num_epochs to {fit} "
            "(overrides={'train.num_epochs': N})"
            if fit
            else f"raise max_gpu_hours to at least {cost.gpu_hours:.2f}",
            code="OVER_BUDGET",
        ),
        headline="projected cost above the limit; nothing was launched",
    )
