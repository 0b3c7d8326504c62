"""Divergence: a train loss that turned NaN/infinite, or exploded far above its recent level.

Only the training loss counts (status.json train records). Gradient norms are never read: with mixed
precision the loss scaler produces non-finite gradient norms in the first iterations on purpose (it skips
the step and halves the scale), so a non-finite grad_norm alone is not divergence.

Thresholds (docs/run-safety.md):
- NONFINITE_RUN consecutive logged losses that are NaN or infinite -> diverged;
- EXPLODED_RUN consecutive losses above EXPLOSION_FACTOR x the median of the last MEDIAN_WINDOW finite
  losses, once at least MIN_HISTORY finite losses were seen -> diverged.
"""

import math
import statistics
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field

NONFINITE_RUN = 3
EXPLOSION_FACTOR = 10.0
EXPLODED_RUN = 5
MEDIAN_WINDOW = 50
MIN_HISTORY = 20


class LossWatch(BaseModel):
    """What the divergence detector remembers between scans (stored with the job's findings)."""

    model_config = ConfigDict(extra="ignore")

    recent: list[float] = Field(
        default_factory=list, description="Last finite losses (the median window)."
    )
    finite_seen: int = 0
    bad_run: int = Field(default=0, description="Consecutive suspicious losses so far.")
    first_bad_iter: int | None = None
    diverged: bool = False
    kind: str | None = Field(default=None, description="non-finite or exploded.")
    iteration: int | None = Field(
        default=None, description="Global iteration of the first bad loss of the run."
    )
    last_good_iter: int | None = None
    loss: str | None = Field(
        default=None, description="The loss that tripped it, as text (nan, inf, 1e9)."
    )


def _suspicious(watch: LossWatch, loss: float) -> str | None:
    if not math.isfinite(loss):
        return "non-finite"
    history = watch.finite_seen >= MIN_HISTORY and watch.recent
    if history and loss > EXPLOSION_FACTOR * statistics.median(watch.recent):
        return "exploded"
    return None


def observe(watch: LossWatch, iteration: int | None, loss: float | None) -> None:
    """Fold one logged train loss; sets diverged once a threshold is crossed (and keeps it set)."""
    if loss is None or watch.diverged:
        return
    kind = _suspicious(watch, loss)
    if kind is None:
        watch.bad_run, watch.first_bad_iter = 0, None
        watch.last_good_iter = iteration
        watch.finite_seen += 1
        watch.recent = [*watch.recent, loss][-MEDIAN_WINDOW:]
        return
    watch.bad_run += 1
    if watch.first_bad_iter is None:
        watch.first_bad_iter = iteration
    needed = NONFINITE_RUN if kind == "non-finite" else EXPLODED_RUN
    if watch.bad_run >= needed:
        watch.diverged, watch.kind = True, kind
        watch.iteration, watch.loss = watch.first_bad_iter, f"{loss:.4g}"


def observe_all(watch: LossWatch, losses: Iterable[tuple[int | None, float | None]]) -> None:
    for iteration, loss in losses:
        observe(watch, iteration, loss)


def epoch_of(iteration: int | None, iters_per_epoch: int | None) -> int | None:
    """1-based epoch of a global 1-based iteration."""
    if iteration is None or not iters_per_epoch:
        return None
    return (iteration - 1) // iters_per_epoch + 1
