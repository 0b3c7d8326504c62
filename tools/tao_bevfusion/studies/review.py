"""The pre-launch review of a study: what will be searched, how, at what cost, and the confirming call.

Built without Optuna (the review gate answers fast). `tao_bevfusion.studies.study.review` is this function.
"""

import json
import math
from typing import Any

from pydantic import BaseModel, Field

from tao_bevfusion.studies.settings import PRUNING_ALGORITHMS, AutoMLSettings
from tao_bevfusion.studies.space import SearchSpace

METHOD = {
    "bayesian": "Optuna TPESampler (multivariate, constant liar for concurrent trials), {startup} random "
                "start-up trials; no pruning (every trial runs its full epochs)",
    "random": "Optuna RandomSampler; no pruning",
    "asha": "Optuna RandomSampler with SuccessiveHalvingPruner (asynchronous successive halving): at each rung "
            "a trial goes on only if its AP11 is in the top 1/{eta} of the trials that reached that rung",
    "hyperband": "Optuna RandomSampler with HyperbandPruner: several successive-halving brackets whose first "
                 "rungs differ, so some trials get a longer look before they can be stopped",
}


class ReviewParam(BaseModel):
    key: str
    scale: str = Field(description="log, linear or categorical.")
    low: float | None = None
    high: float | None = None
    choices: list[Any] | None = None
    baseline: Any = Field(description="Value of the baseline trial (trial 0).")
    why: str
    schema_bounds: str


class ReviewBudget(BaseModel):
    trials: int = Field(description="Trials in total, the baseline included.")
    epochs_per_trial: int = Field(description="Epochs of a full trial (automl_max_epochs).")
    validation_interval: int = Field(description="Epochs between validations; every scored epoch is checkpointed.")
    pruning: str = Field(description="none, or how trials are stopped early.")
    pruning_rungs: list[int] = Field(description="Epochs at which a trial can be stopped (empty: never).")
    reduction_factor: int | None = None


class ReviewConcurrency(BaseModel):
    concurrent: int = Field(description="Trials running at once.")
    gpus_per_trial: int = Field(description="GPUs each trial uses: nodes_per_trial x GPUs per node.")
    nodes_per_trial: int = Field(default=1, description="Nodes each trial runs on (Slurm/Kubernetes multi-node).")
    gpu_slots: list[list[str]] = Field(description="Host GPU ids each concurrent trial gets ([] = none).")


class StudyReview(BaseModel):
    """Everything the user confirms before a study starts (nothing is launched yet)."""

    algorithm: str
    method: str = Field(description="Sampler and pruner, in words.")
    search_space: list[ReviewParam]
    budget: ReviewBudget
    concurrency: ReviewConcurrency
    baseline: dict[str, Any] = Field(description="Trial 0: the user's/default values, run first.")
    estimated_cost_gpu_epochs: float = Field(description="Expected GPU-epochs (pruning included, rough).")
    max_cost_gpu_epochs: float = Field(description="Upper bound: every trial runs every epoch.")
    estimated_gpu_hours: float | None = Field(default=None, description=(
        "GPU-epochs x the GPU-seconds per epoch measured on a past train job of this data root (null when none)."))
    gpu_hours_basis: str = Field(default="no past train job on this data root: run one epoch to measure", description=(
        "Where the GPU-hours figure comes from."))
    cost_note: str
    results_dir: str = Field(description="Where the study folder, trials and best_rec.json go.")
    confirm_call: Any = Field(description="The exact call that starts this study.")
    notes: list[str] = Field(default_factory=list)
    run_safety: dict[str, Any] | None = Field(default=None, description=(
        "Sampler and why, projected GPU-hours (measured or estimated, with its source), the disk the trials' "
        "checkpoints need (peak, kept after retention, free), and the study's limits."))

    def digest(self) -> str:
        lines = [f"AutoML study review ({self.algorithm}): {self.method}."]
        lines += [f"- {p.key}: {p.scale} "
                  + (f"{p.choices}" if p.choices is not None else f"[{p.low:g}, {p.high:g}]")
                  + f", baseline {p.baseline!r}. Why: {p.why}" for p in self.search_space]
        b, c = self.budget, self.concurrency
        lines.append(f"Budget: {b.trials} trials x {b.epochs_per_trial} epochs, validation every "
                     f"{b.validation_interval}; pruning: {b.pruning}"
                     + (f" at epochs {b.pruning_rungs}" if b.pruning_rungs else "") + ".")
        lines.append(f"Concurrency: {c.concurrent} at once, {c.gpus_per_trial} GPU(s) each, slots {c.gpu_slots}.")
        lines.append(f"Cost: about {self.estimated_cost_gpu_epochs:g} GPU-epochs (at most "
                     f"{self.max_cost_gpu_epochs:g}); {self.cost_note}")
        hours = f"about {self.estimated_gpu_hours:g} GPU-hours" if self.estimated_gpu_hours is not None else "GPU-hours"
        lines.append(f"{hours} ({self.gpu_hours_basis}).")
        lines.append(f"Results: {self.results_dir}. Confirm with: {json.dumps(self.confirm_call)}")
        lines += [f"Note: {n}" for n in self.notes]
        return "\n".join(lines)


def sha_rungs(min_resource: int, eta: int, max_epochs: int) -> list[int]:
    """Epochs at which successive halving compares trials: r, r*eta, r*eta^2, ... below max_epochs."""
    rungs, r = [], max(min_resource, 1)
    while r < max_epochs:
        rungs.append(r)
        r *= eta
    return rungs


def pruning_rungs(settings: AutoMLSettings, validation_interval: int = 1) -> list[int]:
    if settings.automl_algorithm not in PRUNING_ALGORITHMS:
        return []
    r = settings.min_resource(validation_interval)
    return sha_rungs(r, settings.automl_reduction_factor, settings.automl_max_epochs)


def expected_epochs(max_epochs: int, rungs: list[int], eta: int) -> float:
    """Expected epochs per trial under successive halving: 1/eta of the trials pass each rung. Optimistic
    early in a study (the first trial at a rung always passes)."""
    if not rungs:
        return float(max_epochs)
    total, start, survive = 0.0, 0, 1.0
    for rung in [*rungs, max_epochs]:
        total += survive * (rung - start)
        start, survive = rung, survive / eta
    return total


def startup_trials(trials: int) -> int:
    """TPE random start-up trials: 4-5 (Optuna's 10 is too many for 10-25 trials), fewer for tiny studies."""
    return max(2, min(5, trials // 3))


def review(settings: AutoMLSettings, space: SearchSpace, *, gpus: list[str], gpus_per_trial: int = 1, nodes: int = 1,
           scheduled: bool = False, validation_interval: int = 1, results_dir: str, confirm_call: Any) -> StudyReview:
    """The review object. `gpus` are the host GPU ids the study may use ([] = trials get no GPUs)."""
    trials = settings.trials(len(gpus))
    concurrent = min(settings.concurrency(len(gpus), gpus_per_trial), trials)
    slots = [gpus[i * gpus_per_trial:(i + 1) * gpus_per_trial] for i in range(concurrent)] if gpus else \
        [[] for _ in range(concurrent)]
    rungs = pruning_rungs(settings, validation_interval)
    eta = settings.automl_reduction_factor
    epochs = settings.automl_max_epochs
    per_trial = expected_epochs(epochs, rungs, eta)
    gpu_factor = max(gpus_per_trial, 1) * max(nodes, 1)  # GPUs per trial = nodes x GPUs per node
    algorithm = settings.automl_algorithm
    pruning = "none" if not rungs else f"{algorithm}, reduction factor {eta}, first rung at epoch {rungs[0]}"
    waves = math.ceil(trials / concurrent)
    notes = [f"{waves} wave(s) of {concurrent} trial(s); wall time is about {waves} x the time of one "
             f"{epochs}-epoch run" + (" or less with pruning" if rungs else "")]
    if scheduled:
        notes.append(f"the scheduler gives each trial {nodes} node(s) x {gpus_per_trial} GPU(s) = {gpu_factor} GPU(s)")
    elif not gpus:
        notes.append("no GPUs requested (gpus=[]): trials run without GPUs; cost is counted per trial-epoch")
    if algorithm == "hyperband":
        notes.append("hyperband brackets start their first rung at different epochs; rungs shown are bracket 0's")
    return StudyReview(
        algorithm=algorithm,
        method=METHOD[algorithm].format(startup=startup_trials(trials), eta=eta),
        search_space=[ReviewParam(key=p.key, scale=p.scale, low=p.low, high=p.high, choices=p.choices,
                                  baseline=p.baseline, why=p.why, schema_bounds=p.schema_bounds)
                      for p in space.params],
        budget=ReviewBudget(trials=trials, epochs_per_trial=epochs, validation_interval=validation_interval,
                            pruning=pruning, pruning_rungs=rungs, reduction_factor=eta if rungs else None),
        concurrency=ReviewConcurrency(concurrent=concurrent, gpus_per_trial=gpus_per_trial * max(nodes, 1),
                                      nodes_per_trial=max(nodes, 1), gpu_slots=slots),
        baseline=space.baseline(),
        estimated_cost_gpu_epochs=round(trials * per_trial * gpu_factor, 1),
        max_cost_gpu_epochs=float(trials * epochs * gpu_factor),
        cost_note=(f"{trials} trials x ~{per_trial:.1f} epochs (successive halving keeps 1/{eta} per rung)"
                   if rungs else f"{trials} trials x {epochs} epochs") + f" x {gpu_factor} GPU(s)",
        results_dir=results_dir, confirm_call=confirm_call, notes=notes)
