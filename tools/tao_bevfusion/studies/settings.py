"""`automl_settings`: the skill bank's names (tao-run-automl), with defaults for BEVFusion on 1-8 GPUs.

Field descriptions are read by the model that fills them in, so each says why its default is what it is.
"""

import difflib
import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tao_bevfusion.core.errors import InputError, problem

Algorithm = Literal["bayesian", "random", "asha", "hyperband"]
ALGORITHMS: tuple[str, ...] = ("bayesian", "random", "asha", "hyperband")
PRUNING_ALGORITHMS = ("asha", "hyperband")
# Trials (baseline included) by GPU count, from the research table: enough for TPE to leave its random
# start-up phase (4-5 trials) and exploit for a few, at a wall time of roughly 1.5-4 full runs.
TRIALS_BY_GPUS = ((1, 10), (2, 12), (4, 16), (8, 24))
MAX_BATCH_PER_GPU = 8


class ParamRange(BaseModel):
    """Bounds of one searched key: `min`/`max` (with `scale`) for numbers, or `choices`."""

    model_config = ConfigDict(extra="forbid")

    min: float | None = Field(default=None, description="Lower bound (inclusive); needs `max`.")
    max: float | None = Field(default=None, description="Upper bound (inclusive); needs `min`.")
    scale: Literal["log", "linear"] | None = Field(
        default=None,
        description="Sampling scale; null = log for lr/weight_decay-like keys, else linear.",
    )
    choices: list[int | float | bool] | None = Field(
        default=None,
        description="A categorical set instead of min/max (e.g. batch_size [1, 2, 4]).",
    )

    @model_validator(mode="after")
    def _one_form(self) -> "ParamRange":
        if self.choices is not None:
            if self.min is not None or self.max is not None:
                raise ValueError("give either choices or min/max, not both")
            if not self.choices:
                raise ValueError("choices must not be empty")
        elif self.min is None or self.max is None:
            raise ValueError("give both min and max (or choices)")
        elif self.min >= self.max:
            raise ValueError(f"min ({self.min}) must be below max ({self.max})")
        return self


class AutoMLSettings(BaseModel):
    """How the built-in study searches. Unknown keys are errors (a typo would silently change the budget)."""

    model_config = ConfigDict(extra="forbid")

    automl_algorithm: Algorithm = Field(
        default="bayesian",
        description="bayesian = Optuna TPE (model-based, best for 10-25 full-length trials, the default); "
        "random = random search; asha = random configs stopped early at rungs (successive halving), "
        "for larger budgets; hyperband = several ASHA brackets with different starting budgets.",
    )
    automl_max_recommendations: int | None = Field(
        default=None,
        ge=2,
        le=200,
        description="Trials in the study, the baseline included. null = by GPU count: 10 (1 GPU), 12 (2), "
        "16 (4), 24 (8); TPE needs about 5 random start-up trials before it models anything, so "
        "fewer than 8 trials is mostly random search.",
    )
    automl_max_concurrent: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="Trials running at once. null = one trial per available GPU group (1 without GPUs): "
        "BEVFusion scales poorly across GPUs, so one GPU per trial explores more per GPU-hour.",
    )
    automl_max_epochs: int = Field(
        default=10,
        ge=1,
        le=1000,
        description="Epochs of a full trial (the LR schedule is rescaled to it). 10 = the KITTI-person spec's "
        "default; a pruned trial stops earlier.",
    )
    automl_reduction_factor: int = Field(
        default=3,
        ge=2,
        le=8,
        description="Successive-halving eta for asha/hyperband: keep the top 1/eta at each rung. 3 gives "
        "rungs at r, 3r, 9r epochs, which fit a 10-30 epoch budget.",
    )
    automl_hyperparameters: list[str] | None = Field(
        default=None,
        description="Dotted spec keys to search. null = the schema's automl_default_parameters "
        "(train.optimizer.lr, train.optimizer.weight_decay, dataset.train_dataset.batch_size). "
        "Any key schemas/train.schema.json marks searchable may be added.",
    )
    custom_param_ranges: dict[str, ParamRange] = Field(
        default_factory=dict,
        description="Per-key bounds, e.g. {'train.optimizer.lr': {'min': 1e-4, 'max': 5e-4}} or "
        "{'dataset.train_dataset.batch_size': {'choices': [1, 2]}}; must lie inside the schema's bounds.",
    )

    def trials(self, gpus_available: int) -> int:
        if self.automl_max_recommendations is not None:
            return self.automl_max_recommendations
        for gpus, trials in reversed(TRIALS_BY_GPUS):
            if gpus_available >= gpus:
                return trials
        return TRIALS_BY_GPUS[0][1]

    def concurrency(self, gpus_available: int, gpus_per_trial: int) -> int:
        """Trials at once; an error when more are asked for than the GPUs can serve."""
        slots = gpus_available // max(gpus_per_trial, 1) if gpus_available else 0
        if self.automl_max_concurrent is None:
            return max(slots, 1)
        if gpus_available and self.automl_max_concurrent > slots:
            raise InputError(
                problem(
                    "automl_settings.automl_max_concurrent",
                    f"{self.automl_max_concurrent} concurrent trials x {gpus_per_trial} GPU(s) each need "
                    f"{self.automl_max_concurrent * gpus_per_trial} GPUs, only {gpus_available} are available",
                    f"set automl_max_concurrent <= {max(slots, 1)} (or null), or give more GPUs",
                    value=self.automl_max_concurrent,
                ),
                headline="invalid automl_settings",
            )
        return self.automl_max_concurrent

    def min_resource(self, validation_interval: int = 1) -> int:
        """First pruning rung in epochs: max(2v, ceil(E/9)) rounded up to a multiple of v. Epoch-1 AP is too
        noisy to prune on (research: min_resource=1 pruned 9 of 12 trials)."""
        v = max(validation_interval, 1)
        r = max(2 * v, math.ceil(self.automl_max_epochs / 9))
        return min(math.ceil(r / v) * v, self.automl_max_epochs)


def parse_settings(raw: dict[str, Any] | AutoMLSettings | None) -> AutoMLSettings:
    """Validate `automl_settings`, turning pydantic's errors into one InputError naming each field."""
    if isinstance(raw, AutoMLSettings):
        return raw
    try:
        return AutoMLSettings.model_validate(raw or {})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            path = f"automl_settings.{loc}" if loc else "automl_settings"
            if err["type"] == "extra_forbidden":
                key = str(err["loc"][-1])
                close = difflib.get_close_matches(key, list(AutoMLSettings.model_fields), n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                problems.append(
                    problem(
                        path,
                        "unknown setting",
                        hint + "known settings: " + ", ".join(AutoMLSettings.model_fields),
                        value=key,
                    )
                )
            else:
                problems.append(problem(path, err["msg"], _fix_for(loc), value=err.get("input")))
        raise InputError(problems, headline="invalid automl_settings") from None


def _fix_for(loc: str) -> str:
    field = AutoMLSettings.model_fields.get(loc.split(".")[0])
    if loc.startswith("automl_algorithm"):
        return "use one of " + ", ".join(ALGORITHMS)
    if field is None or not field.description:
        return "see the automl_settings field descriptions"
    return field.description
