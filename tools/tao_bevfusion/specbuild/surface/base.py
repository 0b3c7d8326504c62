"""Shared base for 5.5 dataclass nodes: unknown keys are errors, as in the container."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Node(BaseModel):
    """A 5.5 dataclass node. `extra="forbid"` mirrors OmegaConf's ConfigKeyError for unknown keys."""

    model_config = ConfigDict(extra="forbid", strict=True, protected_namespaces=())


def field(default: Any, description: str, **extra: Any) -> Any:
    """A field with a default, a description for the model that reads the schema, and schema extras.

    Extras understood by the schema generator: `popular` (bool), `automl` (bool),
    `x_tao_type` (the skill-bank type name), `math_cond` (string), `enum` (list).
    """
    bounds = {k: extra.pop(k) for k in ("ge", "gt", "le", "lt") if k in extra}
    if isinstance(default, type) and issubclass(default, Node):
        return Field(
            default_factory=default, description=description, json_schema_extra=extra or None
        )
    if isinstance(default, (dict, list)):
        frozen = default
        return Field(
            default_factory=lambda: _copy(frozen),
            description=description,
            json_schema_extra=extra or None,
            **bounds,
        )
    return Field(default, description=description, json_schema_extra=extra or None, **bounds)


def _copy(value: Any) -> Any:
    import copy

    return copy.deepcopy(value)
