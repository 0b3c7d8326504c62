"""The search space, from the one source: `schemas/train.schema.json` (generated from the typed 5.5 surface).

The schema publishes `automl_default_parameters` (searched when the user names none),
`automl_disabled_parameters` (never searched) and each key's bounds (`minimum`, `maximum`,
`exclusiveMinimum`, `exclusiveMaximum`). A key is searchable when it is a number, integer or boolean leaf
of the schema, not disabled, and not one the study itself sets (epochs and intervals are the budget).
This module does not import Optuna: the review is built without it.
"""

import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from tao_bevfusion.core.errors import InputError, Problem, problem
from tao_bevfusion.core.settings import skill_dir
from tao_bevfusion.core.yamlio import load_yaml_file
from tao_bevfusion.studies.settings import MAX_BATCH_PER_GPU, AutoMLSettings, ParamRange

BATCH_KEY = "dataset.train_dataset.batch_size"
LR_KEY = "train.optimizer.lr"
WD_KEY = "train.optimizer.weight_decay"
# The study owns these: every trial runs automl_max_epochs with checkpoint_interval == validation_interval.
STUDY_OWNED = {"train.num_epochs": "set automl_max_epochs instead (the budget of a full trial)",
               "train.checkpoint_interval": "the study sets it equal to train.validation_interval",
               "train.validation_interval": "set it in the launch overrides; the study does not search it"}
GB_PER_SAMPLE = 6.0  # 5.5's guidance: batch_size 4 per GPU needs 24 GB+ (contract §7, CUDA OOM row)
ASSUMED_GPU_GB = 24.0
DEFAULT_RANGES: dict[str, tuple[float, float, str]] = {
    LR_KEY: (5e-5, 1e-3, "4x below to 5x above the 5.5 AdamW default 2e-4; log scale because the learning "
                         "rate acts multiplicatively. A wider range spends trials on runs that diverge (too "
                         "high) or barely move in a 10-epoch budget (too low)"),
    WD_KEY: (1e-3, 1e-1, "a decade either side of the AdamW default 0.01, log scale: decoupled weight decay "
                         "matters by order of magnitude, not by small steps"),
}


class ParamSpec(BaseModel):
    """One searched key: its distribution, the baseline value, and why it is bounded there."""

    key: str = Field(description="Dotted spec key.")
    kind: Literal["float", "int", "categorical"]
    low: float | None = Field(default=None, description="Lower bound (inclusive) for float/int.")
    high: float | None = Field(default=None, description="Upper bound (inclusive) for float/int.")
    log: bool = Field(default=False, description="Sampled uniformly in log space.")
    choices: list[int | float | bool] | None = None
    baseline: Any = Field(description="The value trial 0 (the baseline) uses.")
    why: str = Field(description="Why the range is what it is.")
    schema_bounds: str = Field(description="The bounds schemas/train.schema.json allows for this key.")

    @property
    def scale(self) -> str:
        return "categorical" if self.kind == "categorical" else ("log" if self.log else "linear")


class SearchSpace(BaseModel):
    params: list[ParamSpec]

    def keys(self) -> list[str]:
        return [p.key for p in self.params]

    def baseline(self) -> dict[str, Any]:
        return {p.key: p.baseline for p in self.params}


def schema_path() -> Path:
    return skill_dir() / "schemas" / "train.schema.json"


@lru_cache(maxsize=4)
def _load(path: str, mtime: float) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(Path(path).read_text())
    return data


def load_train_schema() -> dict[str, Any]:
    path = schema_path()
    if not path.is_file():
        raise InputError(problem(str(path), "the train schema is missing",
                                     "run `python -m tao_bevfusion.generate` (or reinstall the package)"))
    return _load(str(path), path.stat().st_mtime)


def shorthands() -> dict[str, str]:
    """The skill bank's `spec_shorthand_keys` (learning_rate, batch_size, ...), from references/skill_info.yaml."""
    path = skill_dir() / "references" / "skill_info.yaml"
    data = load_yaml_file(path) if path.is_file() else {}
    keys = data.get("spec_shorthand_keys", {}) if isinstance(data, dict) else {}
    return {str(k): str(v) for k, v in keys.items()}


def schema_property(schema: dict[str, Any], key: str) -> dict[str, Any] | None:
    node: dict[str, Any] | None = schema
    for part in key.split("."):
        props = node.get("properties") if node else None
        if not isinstance(props, dict) or part not in props:
            return None
        node = props[part]
    return node


def _json_type(prop: dict[str, Any]) -> str:
    t = prop.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), None)
    return str(t)


def bounds_text(prop: dict[str, Any]) -> str:
    parts = [f"{k} {prop[k]}" for k in ("exclusiveMinimum", "minimum", "maximum", "exclusiveMaximum") if k in prop]
    return ", ".join(parts) or "unbounded"


def _outside(prop: dict[str, Any], value: float) -> str | None:
    """Which schema bound `value` breaks, or None."""
    if "minimum" in prop and value < prop["minimum"]:
        return f"below the schema's minimum {prop['minimum']}"
    if "exclusiveMinimum" in prop and value <= prop["exclusiveMinimum"]:
        return f"not above the schema's exclusiveMinimum {prop['exclusiveMinimum']}"
    if "maximum" in prop and value > prop["maximum"]:
        return f"above the schema's maximum {prop['maximum']}"
    if "exclusiveMaximum" in prop and value >= prop["exclusiveMaximum"]:
        return f"not below the schema's exclusiveMaximum {prop['exclusiveMaximum']}"
    return None


def batch_choices(gpu_memory_gb: float | None) -> list[int]:
    """Per-GPU batch sizes that fit: about 6 GB per sample (5.5: batch 4 needs 24 GB+), the largest power of
    two that fits, capped at 8, and the two powers below it. 24 GB -> [1, 2, 4]; 48/80 GB -> [2, 4, 8];
    16 GB -> [1, 2]; unknown (no GPUs visible) -> assume 24 GB."""
    mem = gpu_memory_gb if gpu_memory_gb and gpu_memory_gb > 0 else ASSUMED_GPU_GB
    fit = max(int(mem // GB_PER_SAMPLE), 1)
    top = min(2 ** int(math.log2(fit)), MAX_BATCH_PER_GPU)
    return sorted({b for b in (top // 4, top // 2, top) if b >= 1})


def resolve_key(key: str, schema: dict[str, Any], aliases: dict[str, str]) -> tuple[str, Problem | None]:
    """The dotted key for `key` (shorthands mapped) and the reason it cannot be searched, if any."""
    full = aliases.get(key, key)
    path = f"automl_settings.automl_hyperparameters[{key}]"
    if full in STUDY_OWNED:
        return full, problem(path, f"{full} is set by the study, not searched", STUDY_OWNED[full], value=key)
    if full in set(schema.get("automl_disabled_parameters", [])):
        return full, problem(path, f"{full} is in the schema's automl_disabled_parameters (not searchable)",
                             "search one of " + ", ".join(searchable_keys(schema)[:12]) + ", ...", value=key)
    prop = schema_property(schema, full)
    if prop is None:
        return full, problem(path, f"{full} is not a key of the 5.5 train schema",
                             "use a dotted key from schemas/train.schema.json, e.g. " + LR_KEY, value=key)
    if _json_type(prop) not in ("number", "integer", "boolean"):
        return full, problem(path, f"{full} is a {_json_type(prop)}, not a number or boolean",
                             "search numeric or boolean keys only", value=key)
    return full, None


def searchable_keys(schema: dict[str, Any]) -> list[str]:
    disabled = set(schema.get("automl_disabled_parameters", []))
    out: list[str] = []

    def walk(node: dict[str, Any], prefix: str) -> None:
        for name, sub in node.get("properties", {}).items():
            key = prefix + name
            if "properties" in sub:
                walk(sub, key + ".")
            elif key not in disabled and key not in STUDY_OWNED and _json_type(sub) in ("number", "integer",
                                                                                         "boolean"):
                out.append(key)
    walk(schema, "")
    return sorted(out)


def build_space(settings: AutoMLSettings, *, user_values: dict[str, Any] | None = None,
                gpu_memory_gb: float | None = None, schema: dict[str, Any] | None = None) -> SearchSpace:
    """The study's search space. `user_values` = dotted keys the user set explicitly (their values are the
    baseline and widen a default range to include them); other baselines are the schema's defaults."""
    schema = schema if schema is not None else load_train_schema()
    aliases = shorthands()
    requested = settings.automl_hyperparameters or list(schema.get("automl_default_parameters", []))
    ranges = {aliases.get(k, k): (k, v) for k, v in settings.custom_param_ranges.items()}
    problems: list[Problem] = []
    params: list[ParamSpec] = []
    keys: list[str] = []
    for raw in requested:
        key, bad = resolve_key(raw, schema, aliases)
        if bad:
            problems.append(bad)
        elif key not in keys:
            keys.append(key)
    for key, (raw, _) in ranges.items():
        if key not in keys:
            problems.append(problem(f"automl_settings.custom_param_ranges.{raw}", f"{key} is not searched",
                                    "add it to automl_hyperparameters, or drop its range", value=raw))
    for key in keys:
        prop = schema_property(schema, key) or {}
        user = (user_values or {})
        custom = ranges.get(key, (key, None))[1]
        try:
            params.append(_param(key, prop, custom, user.get(key, prop.get("default")), key in user,
                                 gpu_memory_gb))
        except InputError as exc:
            problems.extend(exc.problems)
    if problems:
        raise InputError(problems, headline="invalid AutoML search space")
    return SearchSpace(params=params)


def _param(key: str, prop: dict[str, Any], custom: ParamRange | None, baseline: Any, user_set: bool,
           gpu_memory_gb: float | None) -> ParamSpec:
    jtype, bounds = _json_type(prop), bounds_text(prop)
    path = f"automl_settings.custom_param_ranges.{key}"
    if custom is not None and custom.choices is not None:
        spec = _checked_choices(key, prop, custom.choices, path)
    elif custom is not None:
        spec = _checked_range(key, prop, custom, path)
    elif key == BATCH_KEY:
        spec = ParamSpec(key=key, kind="categorical", choices=list(batch_choices(gpu_memory_gb)), baseline=None,
                         why=f"per-GPU batch sizes that fit {gpu_memory_gb or ASSUMED_GPU_GB:g} GB at about "
                             f"{GB_PER_SAMPLE:g} GB per sample (5.5: batch 4 needs 24 GB+), capped at "
                             f"{MAX_BATCH_PER_GPU}", schema_bounds=bounds)
    elif key in DEFAULT_RANGES:
        low, high, why = DEFAULT_RANGES[key]
        spec = ParamSpec(key=key, kind="float", low=low, high=high, log=True, baseline=None, why=why,
                         schema_bounds=bounds)
    elif jtype == "boolean":
        spec = ParamSpec(key=key, kind="categorical", choices=[False, True], baseline=None,
                         why="a boolean: both values", schema_bounds=bounds)
    else:
        spec = _schema_range(key, prop, jtype, path)
    return _with_baseline(spec, baseline, widen=user_set and custom is None)


def _schema_range(key: str, prop: dict[str, Any], jtype: str, path: str) -> ParamSpec:
    low, high = prop.get("minimum"), prop.get("maximum")
    if low is None or high is None:
        raise InputError(problem(path, f"{key} has no default range and the schema bounds it only by "
                                     f"{bounds_text(prop)}", f"give custom_param_ranges['{key}'] = "
                                     "{'min': ..., 'max': ...} inside those bounds"))
    kind: Literal["float", "int"] = "int" if jtype == "integer" else "float"
    return ParamSpec(key=key, kind=kind, low=low, high=high, log=False, baseline=None,
                     why="the schema's full bounds (no narrower default is known for this key)",
                     schema_bounds=bounds_text(prop))


def _checked_range(key: str, prop: dict[str, Any], rng: ParamRange, path: str) -> ParamSpec:
    jtype = _json_type(prop)
    assert rng.min is not None and rng.max is not None
    problems = [problem(f"{path}.{end}", f"{value:g} is {why}", f"keep {end} within {bounds_text(prop)}",
                        value=value)
                for end, value in (("min", rng.min), ("max", rng.max)) if (why := _outside(prop, value))]
    if jtype == "boolean":
        problems.append(problem(path, f"{key} is a boolean", "use choices: [false, true]"))
    if jtype == "integer" and not (float(rng.min).is_integer() and float(rng.max).is_integer()):
        problems.append(problem(path, f"{key} is an integer key", "give whole-number min/max"))
    log = rng.scale == "log" if rng.scale else key.endswith(("lr", "weight_decay"))
    if log and rng.min <= 0:
        problems.append(problem(f"{path}.min", "a log scale needs min > 0", "raise min or use scale: linear",
                                value=rng.min))
    if problems:
        raise InputError(problems)
    kind: Literal["float", "int"] = "int" if jtype == "integer" else "float"
    return ParamSpec(key=key, kind=kind, low=rng.min, high=rng.max, log=log, baseline=None,
                     why="your custom_param_ranges", schema_bounds=bounds_text(prop))


def _checked_choices(key: str, prop: dict[str, Any], choices: list[Any], path: str) -> ParamSpec:
    jtype, problems = _json_type(prop), []
    for value in choices:
        ok_type = (isinstance(value, bool) if jtype == "boolean" else
                   not isinstance(value, bool) and (float(value).is_integer() if jtype == "integer" else True))
        if not ok_type:
            problems.append(problem(f"{path}.choices", f"{value!r} is not a valid {jtype}",
                                    f"give {jtype} values", value=value))
        elif jtype != "boolean" and (why := _outside(prop, float(value))):
            problems.append(problem(f"{path}.choices", f"{value:g} is {why}",
                                    f"keep choices within {bounds_text(prop)}", value=value))
    if problems:
        raise InputError(problems)
    clean = [int(v) if jtype == "integer" else v for v in choices]
    return ParamSpec(key=key, kind="categorical", choices=sorted(set(clean)), baseline=None,
                     why="your custom_param_ranges", schema_bounds=bounds_text(prop))


def _with_baseline(spec: ParamSpec, value: Any, widen: bool) -> ParamSpec:
    """Put the baseline inside the space: widen to the user's own value, else use the nearest value inside."""
    if spec.kind == "categorical":
        choices = list(spec.choices or [])
        if value in choices:
            return spec.model_copy(update={"baseline": value})
        if widen:
            return spec.model_copy(update={"baseline": value, "choices": sorted([*choices, value]),
                                           "why": spec.why + f"; {value!r} added: it is your value"})
        numeric = [c for c in choices if not isinstance(c, bool) and value is not None and c <= value]
        pick = max(numeric) if numeric else choices[0]
        return spec.model_copy(update={"baseline": pick, "why": spec.why + f"; baseline {pick!r} (default "
                                                                          f"{value!r} is outside)"})
    assert spec.low is not None and spec.high is not None
    v = float(value) if value is not None else math.sqrt(spec.low * spec.high) if spec.log else (
        (spec.low + spec.high) / 2)
    if spec.kind == "int":
        v = round(v)
    if spec.low <= v <= spec.high:
        return spec.model_copy(update={"baseline": v})
    if widen:
        return spec.model_copy(update={"baseline": v, "low": min(spec.low, v), "high": max(spec.high, v),
                                       "why": spec.why + f"; widened to include your value {v:g}"})
    clipped = min(max(v, spec.low), spec.high)
    return spec.model_copy(update={"baseline": clipped,
                                   "why": spec.why + f"; baseline {clipped:g} (default {v:g} is outside)"})
