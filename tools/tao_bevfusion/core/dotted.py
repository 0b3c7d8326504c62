"""Dotted paths into nested mappings ("train.optimizer.lr"): the one reader and remover of a key."""

from typing import Any


def get_path(spec: dict[str, Any], path: str, default: Any = None) -> Any:
    cursor: Any = spec
    for part in path.split("."):
        if not isinstance(cursor, dict) or part not in cursor:
            return default
        cursor = cursor[part]
    return cursor


def drop_path(data: dict[str, Any], path: str) -> None:
    *parents, leaf = path.split(".")
    cursor: Any = data
    for part in parents:
        cursor = cursor.get(part) if isinstance(cursor, dict) else None
    if isinstance(cursor, dict):
        cursor.pop(leaf, None)
