"""The routing vocabulary (references/routing.yaml), shared by routing and the AutoML policy."""

import functools
import re
from typing import Any

from tao_bevfusion.core.settings import skill_dir
from tao_bevfusion.core.yamlio import fast_yaml


def fold(text: str) -> str:
    """Lower case, punctuation to spaces; numbers keep their point and exponent ('lr 2e-4', '0.001')."""
    low = text.lower().replace("’", "'").replace("§", " ").replace("¤", " ")
    low = re.sub(r"(?<=\d)\.(?=\d)", "§", re.sub(r"(?<=\de)-(?=\d)", "¤", low))
    folded = (
        re.sub(r"[^a-z0-9+&'§¤]+", " ", low).replace("'", " ").replace("§", ".").replace("¤", "-")
    )
    return " " + folded + " "


@functools.lru_cache(maxsize=1)
def vocabulary() -> dict[str, Any]:
    data: dict[str, Any] = fast_yaml((skill_dir() / "references" / "routing.yaml").read_text())
    return data
