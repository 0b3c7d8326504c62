"""Size, depth and number bounds on free-form spec input (overrides), checked before anything walks it.

The walk is iterative and stops at the first bound it crosses, so a 3 MB string, a 900-deep dict or a
NaN from the CLI's JSON parser costs one short problem, never a RecursionError or a huge echo.
"""

import math
from typing import Any

from tao_bevfusion.core.errors import Problem, problem

MAX_OVERRIDE_BYTES = (
    64 * 1024
)  # the whole 5.5 spec is ~12 KB of YAML: 64 KB of overrides is generous
MAX_DEPTH = 16  # the deepest 5.5 key (model.pts_middle_encoder.encoder_paddings...) is 5 levels
MAX_KEY_CHARS = 200


def _too_big(size: int) -> Problem:
    return problem(
        "overrides",
        f"more than {MAX_OVERRIDE_BYTES} bytes of overrides (got at least {size})",
        "override only the keys you change; a full spec goes in a file passed as base_spec",
        code="OVERRIDES_TOO_LARGE",
    )


def _scalar_problem(path: str, value: Any) -> Problem | None:
    if isinstance(value, float) and not math.isfinite(value):
        return problem(
            path,
            f"{value} is not a finite number (a 5.5 spec never carries NaN/Infinity)",
            "give a finite number",
            code="NOT_FINITE",
        )
    return None


def override_problems(overrides: dict[str, Any] | None) -> list[Problem]:
    """The first bound the overrides cross (size, depth, key length, non-finite numbers), or []."""
    if not overrides:
        return []
    size = 0
    stack: list[tuple[str, Any, int]] = [("overrides", overrides, 0)]
    while stack:
        path, value, depth = stack.pop()
        if depth > MAX_DEPTH:
            return [
                problem(
                    path[:120] + "…",
                    f"nested deeper than {MAX_DEPTH} levels",
                    "flatten the override (5.5 keys are at most a few levels deep)",
                    code="OVERRIDES_TOO_DEEP",
                )
            ]
        if isinstance(value, dict):
            for key, item in value.items():
                text = str(key)
                size += len(text) + 4
                if len(text) > MAX_KEY_CHARS or text.count(".") > MAX_DEPTH:
                    return [
                        problem(
                            f"overrides key {text[:60]!r}…",
                            f"key longer than {MAX_KEY_CHARS} characters "
                            f"or deeper than {MAX_DEPTH} levels",
                            "use the 5.5 key names (see schemas/<action>.schema.json)",
                            code="OVERRIDES_KEY_TOO_LONG",
                        )
                    ]
                stack.append(
                    (
                        f"{path}.{text}" if path != "overrides" else text,
                        item,
                        depth + 1 + text.count("."),
                    )
                )
        elif isinstance(value, list):
            size += 2 * len(value) + 2
            stack.extend((f"{path}[{i}]", item, depth + 1) for i, item in enumerate(value))
        else:
            size += len(str(value)) if isinstance(value, str) else 8
            found = _scalar_problem(path, value)
            if found:
                return [found]
        if size > MAX_OVERRIDE_BYTES:
            return [_too_big(size)]
    return []
