"""The JSON Schema (2020-12) of each action's 5.5 spec, generated from the typed surface, with the
skill-bank root keys (default, popular, automl_default_parameters, automl_disabled_parameters)."""

import types
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from tao_bevfusion.core.settings import DEFAULT_IMAGE
from tao_bevfusion.specbuild.surface import CLI_SUBTASK, ConvertConfig, ExperimentConfig
from tao_bevfusion.specbuild.surface.base import Node
from tao_bevfusion.specbuild.surface.recommended import recommended_spec

JSON_TYPES = {
    int: ("integer", "int"),
    float: ("number", "float"),
    bool: ("boolean", "bool"),
    str: ("string", "string"),
}
AUTOML_TRAIN = [
    "dataset.train_dataset.batch_size",
    "train.optimizer.lr",
    "train.optimizer.weight_decay",
]
POPULAR_KEYS = {
    "train": [
        "num_epochs",
        "checkpoint_interval",
        "validation_interval",
        "num_gpus",
        "gpu_ids",
        "num_nodes",
    ],
    "evaluate": ["num_gpus", "gpu_ids", "num_nodes"],
    "inference": ["num_gpus", "gpu_ids", "num_nodes"],
}
SHORTHAND_KEYS = {
    "num_epochs": "train.num_epochs",
    "batch_size": "dataset.train_dataset.batch_size",
    "learning_rate": "train.optimizer.lr",
}


def _type_schema(ann: Any) -> dict[str, Any]:
    origin = get_origin(ann)
    if origin in (Union, types.UnionType):
        members = [a for a in get_args(ann) if a is not type(None)]
        nullable = len(members) < len(get_args(ann))
        if len(members) > 1:
            options = [_type_schema(m) for m in members] + ([{"type": "null"}] if nullable else [])
            return {"anyOf": options}
        inner = _type_schema(members[0])
        if nullable:
            inner["type"] = [inner["type"], "null"]
        return inner
    if origin is Literal:
        return {"type": "string", "enum": list(get_args(ann)), "x-tao-type": "categorical"}
    if origin is list:
        (item,) = get_args(ann) or (Any,)
        out: dict[str, Any] = {"type": "array", "x-tao-type": "list"}
        if item is not Any:
            out["items"] = _type_schema(item)
        return out
    if origin is dict:
        return {"type": "object", "x-tao-type": "collection"}
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return _node_schema(ann)
    if ann in JSON_TYPES:
        json_type, tao_type = JSON_TYPES[ann]
        return {"type": json_type, "x-tao-type": tao_type}
    if ann is Any:
        return {}
    raise TypeError(f"no schema mapping for {ann!r}")


def _bounds(info: FieldInfo) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for meta in info.metadata:
        for attr, key in (
            ("ge", "minimum"),
            ("gt", "exclusiveMinimum"),
            ("le", "maximum"),
            ("lt", "exclusiveMaximum"),
        ):
            if getattr(meta, attr, None) is not None:
                out[key] = getattr(meta, attr)
    return out


def _node_schema(node: type[BaseModel]) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for name, info in node.model_fields.items():
        schema = _type_schema(info.annotation)
        schema["description"] = info.description or ""
        schema.update(_bounds(info))
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if extra.get("popular"):
            schema["popular"] = True
        if "math_cond" in extra:
            schema["math_cond"] = extra["math_cond"]
        props[name] = schema
    return {
        "type": "object",
        "x-tao-type": "collection",
        "additionalProperties": False,
        "properties": props,
    }


def _attach_defaults(schema: dict[str, Any], recommended: Any, container: Any) -> None:
    """Set `default` to the recommended value; `x-tao55-default` where the container's own default differs."""
    schema["default"] = recommended
    if container != recommended:
        schema["x-tao55-default"] = container
    for name, sub in schema.get("properties", {}).items():
        rec = recommended.get(name) if isinstance(recommended, dict) else None
        cont = container.get(name) if isinstance(container, dict) else None
        if isinstance(recommended, dict) and name not in recommended:
            sub["x-not-emitted"] = "left out of generated specs; the container default applies"
            continue
        _attach_defaults(sub, rec, cont)


def _paths(schema: dict[str, Any], prefix: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = []
    for name, sub in schema.get("properties", {}).items():
        path = f"{prefix}{name}"
        out.append((path, sub))
        out.extend(_paths(sub, path + "."))
    return out


def _automl_disabled(schema: dict[str, Any], enabled: list[str]) -> list[str]:
    """Everything that is not a numeric or boolean hyperparameter is kept out of AutoML search."""
    disabled = []
    for path, sub in _paths(schema):
        if path in enabled:
            continue
        tao_type = sub.get("x-tao-type")
        if (
            tao_type in ("collection", "list", "string", "categorical")
            or "gpu" in path
            or "num_nodes" in path
        ):
            disabled.append(path)
    return sorted(disabled)


def action_schema(action: str) -> dict[str, Any]:
    node: type[Node] = ConvertConfig if action == "dataset_convert" else ExperimentConfig
    body = _node_schema(node)
    rec = recommended_spec(action)
    container = node().model_dump(mode="python")
    _attach_defaults(body, rec, container)
    body.pop("x-tao55-default", None)
    enabled = AUTOML_TRAIN if action == "train" else []
    popular = (
        {}
        if action == "dataset_convert"
        else {section: {k: rec[section][k] for k in keys} for section, keys in POPULAR_KEYS.items()}
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"TAO 5.5 BEVFusion {action} spec",
        "description": f"Every key `bevfusion {CLI_SUBTASK[action]}` accepts in tao-toolkit:5.5.0-pyt. "
        "`default` is the KITTI-correct spec; `x-tao55-default` is the container's own "
        "default where it differs.",
        **body,
        "popular": popular,
        "automl_default_parameters": enabled,
        "automl_disabled_parameters": []
        if action == "dataset_convert"
        else _automl_disabled(body, enabled),
        "x_tao_schema": {
            "action": action,
            "core_module": "bevfusion",
            "model": "bevfusion",
            "network_arch": "bevfusion",
            "schema_action": action,
            "schema_version": 1,
            "source": "tao-bevfusion typed 5.5 surface (tools/spec/surface)",
            "cli_subtask": CLI_SUBTASK[action],
            "container_image": DEFAULT_IMAGE,
        },
    }


# libyaml's emitter when present (as tao_bevfusion.core.yamlio loads): ~15x faster than the pure-Python one, same text.
_BaseDumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _NoAliasDumper(_BaseDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_yaml(data: Any) -> str:
    return yaml.dump(
        data, Dumper=_NoAliasDumper, sort_keys=False, default_flow_style=False, width=100
    )
