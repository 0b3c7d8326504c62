"""The routing vocabulary (references/routing.yaml), shared by routing and the AutoML policy."""

import functools
import re
from typing import Any

from tao_bevfusion.core.settings import skill_dir
from tao_bevfusion.core.yamlio import fast_yaml


def fold(text: str) -> str:
    return " " + re.sub(r"[^a-z0-9+&']+", " ", text.lower().replace("’", "'")).replace("'", " ") + " "


@functools.lru_cache(maxsize=1)
def vocabulary() -> dict[str, Any]:
    data: dict[str, Any] = fast_yaml((skill_dir() / "references" / "routing.yaml").read_text())
    return data
