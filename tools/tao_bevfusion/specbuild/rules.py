"""Pure rules over spec dicts: key checks against the 5.5 surface, overrides, LR rescale, geometry, GPUs."""

import copy
import difflib
import types
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from tao_bevfusion.core.errors import Problem, problem
from tao_bevfusion.specbuild.schema import SHORTHAND_KEYS
from tao_bevfusion.specbuild.surface.experiment import DEFAULT_LR_SCHEDULER
from tao_bevfusion.specbuild.surface.newer import newer_key_message


def _node_class(ann: Any) -> type[BaseModel] | None:
    if get_origin(ann) in (Union, types.UnionType):
        for arg in get_args(ann):
            found = _node_class(arg)
            if found:
                return found
        return None
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def unknown_keys(data: Any, node: type[BaseModel], prefix: str = "") -> list[Problem]:
    """Keys the 5.5 container would reject, each with the closest valid key."""
    if not isinstance(data, dict):
        return []
    out = []
    for key, value in data.items():
        path = f"{prefix}{key}"
        if not isinstance(key, str):
            out.append(problem(path, "spec keys must be strings", "quote the key"))
            continue
        field = node.model_fields.get(key)
        if field is None:
            close = difflib.get_close_matches(key, list(node.model_fields), n=1, cutoff=0.5)
            hint = (
                f"did you mean '{prefix}{close[0]}'?"
                if close
                else f"valid keys here: {', '.join(node.model_fields)}"
            )
            out.append(
                problem(
                    path,
                    "not a TAO 5.5 BEVFusion key (the container raises ConfigKeyError)",
                    hint,
                    code="UNKNOWN_KEY",
                )
            )
            continue
        sub = _node_class(field.annotation)
        if sub is not None:
            out.extend(unknown_keys(value, sub, path + "."))
    return out


def strip_newer_keys(
    data: dict[str, Any], strict: bool, prefix: str = ""
) -> tuple[list[Problem], list[str]]:
    """Remove 7.x-only keys in place. Returns (errors when strict, change notes when cleaning)."""
    errors, notes = [], []
    for key in list(data):
        path = f"{prefix}{key}"
        msg = newer_key_message(path)
        if msg:
            if strict:
                errors.append(
                    problem(
                        path, msg, "remove the key (5.5 has no equivalent)", code="NEWER_THAN_55"
                    )
                )
            else:
                data.pop(key)
                notes.append(path)
        elif isinstance(data[key], dict) and key in ("wandb", "train", "evaluate", "inference"):
            e, n = strip_newer_keys(data[key], strict, path + ".")
            errors += e
            notes += n
    return errors, notes


def nest_overrides(overrides: dict[str, Any]) -> tuple[dict[str, Any], list[Problem]]:
    """Dotted keys and shorthand keys -> one nested dict (nested values are merged, not replaced)."""
    nested: dict[str, Any] = {}
    problems = []
    for raw_key, value in overrides.items():
        if not isinstance(raw_key, str) or not raw_key:
            problems.append(
                problem(
                    str(raw_key),
                    "override keys must be non-empty strings",
                    "use 'train.num_epochs'",
                )
            )
            continue
        key = SHORTHAND_KEYS.get(raw_key, raw_key)
        parts = key.split(".")
        if any(not p for p in parts):
            problems.append(
                problem(raw_key, "empty segment in dotted key", "write e.g. 'train.num_epochs'")
            )
            continue
        cursor = nested
        for part in parts[:-1]:
            nxt = cursor.setdefault(part, {})
            if not isinstance(nxt, dict):
                problems.append(
                    problem(
                        raw_key,
                        f"'{part}' is set both as a value and as a section",
                        "give each key once",
                    )
                )
                break
            cursor = nxt
        else:
            leaf = parts[-1]
            if isinstance(value, dict) and isinstance(cursor.get(leaf), dict):
                deep_merge(cursor[leaf], value)
            else:
                cursor[leaf] = copy.deepcopy(value)
    return nested, problems


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """OmegaConf merge semantics: dicts merge key by key, lists and scalars replace."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def flat_paths(data: Any, prefix: str = "") -> set[str]:
    if not isinstance(data, dict):
        return set()
    out = set()
    for key, value in data.items():
        path = f"{prefix}{key}"
        out.add(path)
        out |= flat_paths(value, path + ".")
    return out


def rescaled_lr_schedule(num_epochs: int) -> list[dict[str, Any]]:
    """The 5.5 default schedule mapped proportionally from 10 epochs to `num_epochs` (contract §2.7)."""
    sched = copy.deepcopy(DEFAULT_LR_SCHEDULER)
    knee = round(0.24 * num_epochs, 6)
    sched[1].update(T_max=num_epochs, end=num_epochs)
    sched[2]["end"] = knee
    sched[3].update(begin=knee, end=num_epochs)
    return sched


def lr_schedule_problems(schedule: Any, num_epochs: int) -> list[Problem]:
    if not isinstance(schedule, list) or not all(isinstance(e, dict) for e in schedule):
        return [
            problem(
                "train.lr_scheduler",
                "must be a list of scheduler dicts",
                "omit it to get the 5.5 schedule rescaled to num_epochs",
            )
        ]
    ends = [e.get("end") for e in schedule if e.get("by_epoch", True)]
    odd = [
        x
        for x in ends
        if x is not None and (isinstance(x, bool) or not isinstance(x, (int, float)))
    ]
    if odd:
        return [
            problem(
                "train.lr_scheduler",
                f"an epoch-based `end` is not a number: {str(odd[0])[:40]!r}",
                "give each `end` as an epoch number (the last equal to num_epochs), or omit "
                "train.lr_scheduler",
            )
        ]
    numeric = [x for x in ends if isinstance(x, (int, float))]
    if numeric and (max(numeric) != num_epochs or any(x > num_epochs for x in numeric)):
        return [
            problem(
                "train.lr_scheduler",
                f"epoch-based entries end at {max(numeric)}, but train.num_epochs is {num_epochs}",
                "omit train.lr_scheduler (it is rescaled for you) "
                "or make the last epoch-based `end` equal num_epochs",
                value=ends,
            )
        ]
    return []


def geometry_problems(model: dict[str, Any]) -> list[Problem]:
    """Voxel grid, sparse shape and camera BEV grid must agree (contract §2.8)."""
    out = []
    try:
        pcr, vox, grid = model["point_cloud_range"], model["voxel_size"], model["grid_size"]
        sparse = model["pts_middle_encoder"]["sparse_shape"]
        vt, head = model["view_transform"], model["bbox_head"]
        for axis, i in (("x", 0), ("y", 1)):
            cells = (pcr[i + 3] - pcr[i]) / vox[i]
            if abs(cells - round(cells)) > 1e-6 or round(cells) != grid[i] or grid[i] != sparse[i]:
                out.append(
                    problem(
                        "model.grid_size",
                        f"{axis}: range/voxel = {cells:g} cells but grid_size[{i}]={grid[i]} and "
                        f"sparse_shape[{i}]={sparse[i]}",
                        "use point_cloud_range [-54,-54,-5,54,54,3] with voxel_size "
                        "[0.075,0.075,0.2] (the 5.5 sample geometry), or make all three agree",
                    )
                )
        bound = vt["xbound"]
        cam = (bound[1] - bound[0]) / bound[2] / vt["downsample"]
        lidar = grid[0] / head["out_size_factor"]
        if abs(cam - lidar) > 1e-6:
            out.append(
                problem(
                    "model.view_transform.xbound",
                    f"camera BEV grid {cam:g} != grid_size[0] / out_size_factor = {lidar:g}",
                    "keep xbound/ybound ±54 @ 0.3, downsample 2",
                )
            )
    except (KeyError, IndexError, TypeError, ZeroDivisionError) as exc:
        out.append(
            problem(
                "model",
                f"geometry keys are malformed ({exc})",
                "leave the geometry keys at defaults",
            )
        )
    return out


def pydantic_problems(exc: ValidationError) -> list[Problem]:
    out = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"])
        fix = "give a value of the documented type and range (see schemas/<action>.schema.json)"
        if err["type"] == "extra_forbidden":
            fix = "remove the key"
        out.append(
            problem(
                path,
                err["msg"],
                fix,
                value=err.get("input") if not isinstance(err.get("input"), (dict, list)) else None,
                code=err["type"],
            )
        )
    return out
