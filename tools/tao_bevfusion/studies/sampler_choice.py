"""Which Optuna sampler a bayesian study uses, and why (said in the review).

- Every searched parameter numeric (float or int) -> GPSampler: a Gaussian process fits 8-20 expensive
  trials better than TPE's density estimates, which need many observations per dimension.
- Any categorical parameter -> TPESampler(multivariate=True, constant_liar=True): it models the joint
  distribution (lr and weight decay interact) and spreads concurrent proposals.
- GPSampler needs torch and scipy (`pip install 'tao-bevfusion[gp]'`); without them the multivariate TPE
  is used and the review says so.
Start-up trials are sized to the budget: about a quarter of the trials (2-5), and the enqueued ones
(the baseline, the linearly scaled learning rate) count among them. asha/hyperband/random keep the
RandomSampler (successive halving compares trials drawn at random).
"""

import importlib.util
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from tao_bevfusion.studies.space import SearchSpace

if TYPE_CHECKING:
    from optuna.samplers import BaseSampler

SamplerName = Literal["GPSampler", "TPESampler(multivariate)", "RandomSampler"]


class SamplerChoice(BaseModel):
    name: SamplerName
    startup_trials: int = Field(
        description="Trials before the model proposes (the enqueued ones included)."
    )
    why: str


def gp_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("torch", "scipy"))


def startup_for_budget(trials: int) -> int:
    return max(2, min(5, round(trials / 4)))


def choose(
    algorithm: str, space: SearchSpace, trials: int, gp: bool | None = None
) -> SamplerChoice:
    startup = startup_for_budget(trials)
    if algorithm != "bayesian":
        return SamplerChoice(
            name="RandomSampler",
            startup_trials=0,
            why=(
                f"{algorithm}: random proposals; the pruner decides which trials earn more epochs"
            ),
        )
    categorical = [p.key for p in space.params if p.kind == "categorical"]
    if categorical:
        return SamplerChoice(
            name="TPESampler(multivariate)",
            startup_trials=startup,
            why=(
                f"multivariate TPE: {', '.join(categorical)} is categorical (a Gaussian process needs numbers); "
                f"{startup} start-up trials for {trials} trials, the baseline among them"
            ),
        )
    if not (gp_available() if gp is None else gp):
        return SamplerChoice(
            name="TPESampler(multivariate)",
            startup_trials=startup,
            why=(
                "every searched parameter is numeric, so GPSampler would fit best, but torch/scipy are not "
                "installed (pip install 'tao-bevfusion[gp]'): multivariate TPE instead"
            ),
        )
    return SamplerChoice(
        name="GPSampler",
        startup_trials=startup,
        why=(
            f"GPSampler: every searched parameter is numeric and the budget is small ({trials} trials), where a "
            f"Gaussian process beats TPE; {startup} start-up trials, the baseline and the scaled lr among them"
        ),
    )


def build(choice: SamplerChoice, seed: int | None) -> "BaseSampler":
    from optuna.samplers import GPSampler, RandomSampler, TPESampler

    if choice.name == "GPSampler":
        return GPSampler(
            seed=seed, n_startup_trials=choice.startup_trials, deterministic_objective=False
        )
    if choice.name == "TPESampler(multivariate)":
        return TPESampler(
            n_startup_trials=choice.startup_trials,
            seed=seed,
            multivariate=True,
            constant_liar=True,
            warn_independent_sampling=False,
        )
    return RandomSampler(seed=seed)


LR_KEY = "train.optimizer.lr"


def scaled_lr_trial(space: SearchSpace, lr: float | None) -> dict[str, Any] | None:
    """The baseline with the linearly scaled lr, when lr is searched and the scaled value is new and in range."""
    param = next((p for p in space.params if p.key == LR_KEY), None)
    if lr is None or param is None or param.low is None or param.high is None:
        return None
    base = space.baseline()
    if base.get(LR_KEY) == lr or not param.low <= lr <= param.high:
        return None
    return {**base, LR_KEY: lr}
