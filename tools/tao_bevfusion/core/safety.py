"""Run safety settings a caller gives run_action: limits, divergence, retries, checkpoint retention.

Each field validates on its own and says the fix in its message, so a bad value is an input error naming
the field, before anything is built or launched. The settings travel with the job (JobMeta.safety).
"""

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

MAX_HOURS_CAP = 24 * 90  # 90 days of wall clock: anything above is a typo, not a budget
MAX_GPU_HOURS_CAP = 100_000.0
MAX_RETRIES_CAP = 10

OnDivergence = Literal["stop", "warn"]
KeepPolicy = Literal["all", "best_and_last"]


def _hours(value: float | None) -> float | None:
    if value is not None and not 0 < value <= MAX_HOURS_CAP:
        raise ValueError(
            f"max_hours must be above 0 and at most {MAX_HOURS_CAP} (90 days); give the wall-clock "
            "hours the run (or study) may take, e.g. 12, or leave it out for no limit"
        )
    return value


def _gpu_hours(value: float | None) -> float | None:
    if value is not None and not 0 < value <= MAX_GPU_HOURS_CAP:
        raise ValueError(
            f"max_gpu_hours must be above 0 and at most {MAX_GPU_HOURS_CAP:g}; give the GPU-hours "
            "(nodes x GPUs x hours) it may spend, e.g. 40, or leave it out for no limit"
        )
    return value


def _retries(value: int) -> int:
    if not 0 <= value <= MAX_RETRIES_CAP:
        raise ValueError(
            f"max_retries must be 0-{MAX_RETRIES_CAP}; 0 turns automatic resumes off, 2 is the "
            "default"
        )
    return value


class SafetyInput(BaseModel):
    """run_action fields that bound what a run or a study may spend and how it reacts to trouble."""

    max_hours: Annotated[float | None, AfterValidator(_hours)] = Field(
        default=None,
        description=(
            "Wall-clock limit in hours for the run (or the whole study). The run is stopped at the limit (after an "
            "imminent checkpoint), keeps its checkpoints and ends with outcome limit_reached naming the last one."
        ),
    )
    max_gpu_hours: Annotated[float | None, AfterValidator(_gpu_hours)] = Field(
        default=None,
        description=(
            "GPU-hour limit (nodes x GPUs x hours) for the run or the whole study. A launch whose projection "
            "exceeds it is refused before launch; a run that reaches it is stopped (outcome limit_reached)."
        ),
    )
    on_divergence: OnDivergence = Field(
        default="stop",
        description=(
            "train: 'stop' (default) stops a run whose loss turns NaN/inf or explodes (outcome diverged, with the "
            "last good checkpoint and a remedy call); 'warn' lets it run and reports it."
        ),
    )
    max_retries: Annotated[int, AfterValidator(_retries)] = Field(
        default=2,
        description=(
            "train: automatic resumes (from the last complete checkpoint) after an infrastructure failure (killed "
            "from outside, node lost, engine restart, eviction, NCCL timeout); 0 turns it off. Program failures are "
            "never retried. get_job lists the attempts with their causes."
        ),
    )
    keep_checkpoints: KeepPolicy | None = Field(
        default=None,
        description=(
            "'all' or 'best_and_last' (keep the best-validated epoch and the last; the default for AutoML study "
            "trials, 'all' for single runs). get_job reports the bytes freed."
        ),
    )


class RunSafety(BaseModel):
    """The settings as stored with a job (the study's trials carry their own copy)."""

    max_hours: float | None = None
    max_gpu_hours: float | None = None
    on_divergence: OnDivergence = "stop"
    max_retries: int = 2
    keep_checkpoints: KeepPolicy = "all"
    gpus: int = Field(default=1, description="nodes x GPUs per node, for GPU-hours.")

    @classmethod
    def from_input(cls, inp: SafetyInput, gpus: int, trial: bool = False) -> "RunSafety":
        keep = inp.keep_checkpoints or ("best_and_last" if trial else "all")
        return cls(
            max_hours=inp.max_hours,
            max_gpu_hours=inp.max_gpu_hours,
            on_divergence=inp.on_divergence,
            max_retries=inp.max_retries,
            keep_checkpoints=keep,
            gpus=max(1, gpus),
        )

    def limit_seconds(self) -> float | None:
        """Wall-clock seconds until the tighter of the two limits."""
        bounds = [h * 3600 for h in (self.max_hours,) if h]
        if self.max_gpu_hours:
            bounds.append(self.max_gpu_hours * 3600 / self.gpus)
        return min(bounds) if bounds else None
