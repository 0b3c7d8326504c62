"""A study's plan, from run_action's inputs: settings, search space, GPU slots, the review, and each trial's
run_action inputs. Saved as `<study folder>/study.json` (0600: it may carry the model key) so the detached
driver rebuilds every trial from it. Does not import Optuna (the review gate answers fast).
"""

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from tao_bevfusion.backends.gpus import host_gpu_ids
from tao_bevfusion.core.errors import InputError, problem
from tao_bevfusion.core.fsio import atomic_write
from tao_bevfusion.core.layout import StudyFiles
from tao_bevfusion.core.settings import Settings
from tao_bevfusion.specbuild import rules as specrules
from tao_bevfusion.studies.review import StudyReview, review
from tao_bevfusion.studies.settings import AutoMLSettings, parse_settings
from tao_bevfusion.studies.space import STUDY_OWNED, SearchSpace, build_space

if TYPE_CHECKING:
    from tao_bevfusion.jobs.launch import RunActionInput

STUDY_FILE = StudyFiles.PLAN
SNAPSHOT = StudyFiles.SNAPSHOT
EPOCHS_KEY = "train.num_epochs"
VAL_KEY = "train.validation_interval"
CKPT_KEY = "train.checkpoint_interval"
# run_action fields a trial inherits from the study's call; the rest are the study's own.
TRIAL_FIELDS = (
    "data_root",
    "base_spec",
    "pretrained_checkpoint",
    "swin_checkpoint",
    "num_gpus",
    "encryption_key",
    "backend",
    "strict",
    "env",
    "image",
    "num_nodes",
    "backend_options",
    "on_divergence",
    "max_retries",
    "keep_checkpoints",
    "scale_lr",
)
LIMIT_FIELDS = ("max_hours", "max_gpu_hours")  # the whole study's; trials get none of their own


class StudyPlan(BaseModel):
    """Everything a driver needs to run the study, in any process."""

    study_id: str
    folder: str
    settings: AutoMLSettings
    space: SearchSpace
    trials: int
    concurrent: int
    gpu_slots: list[list[str]]
    validation_interval: int
    base: dict[str, Any] = Field(description="run_action inputs every trial shares.")
    overrides: dict[str, Any] = Field(
        description="The user's overrides (dotted leaves), study-owned keys removed."
    )
    seed: int | None = None
    limits: dict[str, Any] = Field(
        default_factory=dict, description="max_hours / max_gpu_hours of the study."
    )
    fixed: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "Hyperparameters the user set in overrides and did not ask to search: kept at their value in every trial."
        ),
    )
    nodes: int = Field(default=1, description="Nodes per trial (multi-node backends).")
    scheduled: bool = Field(
        default=False,
        description=(
            "The scheduler (Slurm, Kubernetes) gives each trial its GPUs: trials name no host GPU ids."
        ),
    )

    def trial_input(self, number: int, params: dict[str, Any], slot: int) -> dict[str, Any]:
        """run_action inputs of trial `number`: its values over the user's, the budget, its own folder."""
        overrides = {
            **self.overrides,
            **params,
            EPOCHS_KEY: self.settings.automl_max_epochs,
            CKPT_KEY: self.validation_interval,
        }
        keep = (
            self.base.get("keep_checkpoints") or "best_and_last"
        )  # trials keep their best and last by default
        out = {
            **self.base,
            "keep_checkpoints": keep,
            "action": "train",
            "automl_policy": "off",
            "overrides": overrides,
            "results_dir": str(trial_dir(Path(self.folder), number)),
        }
        if not self.scheduled:
            out["gpus"] = self.gpu_slots[slot % len(self.gpu_slots)]
        return out

    def save(self) -> Path:
        path = Path(self.folder) / STUDY_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, self.model_dump_json(indent=1))
        return path


def load_plan(folder: Path) -> StudyPlan:
    return StudyPlan.model_validate(json.loads((folder / STUDY_FILE).read_text()))


def trial_dir(folder: Path, number: int) -> Path:
    return StudyFiles(folder).trial_dir(number)


def flatten(nested: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in nested.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _user_overrides(
    inp: "RunActionInput", settings: AutoMLSettings
) -> tuple[dict[str, Any], AutoMLSettings]:
    nested, problems = specrules.nest_overrides(inp.overrides or {})
    if problems:
        raise InputError(problems, headline="invalid overrides")
    flat = flatten(nested)
    epochs = flat.pop(EPOCHS_KEY, None)
    if epochs is not None and "automl_max_epochs" not in settings.model_fields_set:
        if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
            raise InputError(
                problem(
                    "overrides.train.num_epochs",
                    "must be a positive integer",
                    "give e.g. 10, or set automl_settings.automl_max_epochs",
                    value=epochs,
                )
            )
        settings = settings.model_copy(update={"automl_max_epochs": epochs})
    if flat.pop(CKPT_KEY, None) is not None:
        pass  # the study sets it (STUDY_OWNED): every scored epoch needs its checkpoint
    return flat, settings


def _keep_user_fixed(
    space: SearchSpace, overrides: dict[str, Any], settings: AutoMLSettings
) -> tuple[SearchSpace, dict[str, Any]]:
    """A value the user set stays fixed (not searched) unless they listed it in automl_hyperparameters."""
    from tao_bevfusion.studies.space import shorthands

    aliases = shorthands()
    asked = {aliases.get(k, k) for k in settings.automl_hyperparameters or []}
    fixed = {
        k: overrides[k] for k in [p.key for p in space.params] if k in overrides and k not in asked
    }
    kept = SearchSpace(params=[p for p in space.params if p.key not in fixed])
    if fixed and not kept.params:
        raise InputError(
            problem(
                "overrides",
                f"you fixed every searched hyperparameter ({sorted(fixed)}): "
                "nothing is left to search",
                "drop automl (automl_policy='off') for one run, or "
                "list the ones to search in automl_settings.automl_hyperparameters",
            )
        )
    return kept, fixed


def make_plan(
    inp: "RunActionInput", study_id: str, folder: Path, data_root: str, base_spec: str | None
) -> StudyPlan:
    """Validate the study's inputs (every problem an InputError naming its field) and plan it."""
    settings = parse_settings(inp.automl_settings)
    overrides, settings = _user_overrides(inp, settings)
    space = build_space(
        settings, user_values={k: v for k, v in overrides.items() if k not in STUDY_OWNED}
    )
    space, fixed = _keep_user_fixed(space, overrides, settings)
    searched: list[str] = space.keys()
    for key in searched:
        overrides.pop(key, None)  # the trial's own value wins; the user's is the baseline
    # On a cluster the scheduler gives each trial its GPUs; this host's own GPUs are not the study's.
    scheduled = inp.gpus is None and inp.backend in ("slurm", "kubernetes")
    gpus = list(inp.gpus) if inp.gpus is not None else ([] if scheduled else host_gpu_ids())
    per_trial = inp.num_gpus or 1
    trials = settings.trials(len(gpus))
    concurrent = min(settings.concurrency(len(gpus), per_trial), trials)
    slots = (
        [gpus[i * per_trial : (i + 1) * per_trial] for i in range(concurrent)]
        if gpus
        else [[] for _ in range(concurrent)]
    )
    val = overrides.get(VAL_KEY, 1)
    base = {k: v for k, v in inp.model_dump().items() if k in TRIAL_FIELDS and v is not None}
    base["data_root"] = data_root
    if base_spec:
        base["base_spec"] = base_spec
    seed = Settings.from_env().automl_seed
    return StudyPlan(
        fixed=fixed,
        nodes=max(1, inp.num_nodes or 1),
        scheduled=scheduled,
        study_id=study_id,
        folder=str(folder),
        settings=settings,
        space=space,
        trials=trials,
        concurrent=concurrent,
        gpu_slots=slots,
        validation_interval=int(val) if isinstance(val, int) else 1,
        base=base,
        overrides=overrides,
        seed=seed,
        limits={k: getattr(inp, k) for k in LIMIT_FIELDS if getattr(inp, k) is not None},
    )


def plan_review(plan: StudyPlan, confirm_call: Any) -> StudyReview:
    gpus = [g for slot in plan.gpu_slots for g in slot]
    per_trial = len(plan.gpu_slots[0]) if gpus else int(plan.base.get("num_gpus") or 1)
    settings = plan.settings.model_copy(
        update={"automl_max_recommendations": plan.trials, "automl_max_concurrent": plan.concurrent}
    )
    out = review(
        settings,
        plan.space,
        gpus=gpus,
        gpus_per_trial=per_trial,
        nodes=plan.nodes,
        scheduled=plan.scheduled,
        validation_interval=plan.validation_interval,
        results_dir=plan.folder,
        confirm_call=confirm_call,
    )
    if plan.fixed:
        shown = ", ".join(f"{k}={v!r}" for k, v in plan.fixed.items())
        out.notes.insert(
            0,
            f"kept fixed at your values, not searched: {shown} (list them in "
            "automl_settings.automl_hyperparameters to search them)",
        )
    return out
