"""The error knowledge base (references/error_patterns.yaml) and matching it against log and status text."""

import functools
import re
from typing import Literal

from pydantic import BaseModel, Field

from tao_bevfusion.core.settings import skill_dir
from tao_bevfusion.core.yamlio import fast_yaml
from tao_bevfusion.evidence.models import PatternHit


class Pattern(BaseModel):
    id: str
    regex: str
    hints: list[str] = Field(
        description="Literal substrings; a matching line contains at least one."
    )
    actions: list[str] | None = Field(
        default=None, description="Only meaningful for these actions."
    )
    severity: Literal["error", "warning", "harmless"]
    cause: str
    remedy: str
    next_call: str | None = None


class ErrorMatch(BaseModel):
    pattern: str = Field(description="Knowledge-base id of the matched signature.")
    severity: str
    evidence: str = Field(description="The log or status line that matched (trimmed).")
    cause: str
    remedy: str
    next_call: str | None = None


@functools.lru_cache(maxsize=1)
def patterns() -> list[tuple[Pattern, re.Pattern[bytes], list[bytes]]]:
    data = fast_yaml((skill_dir() / "references" / "error_patterns.yaml").read_text())
    items = [Pattern.model_validate(p) for p in data["patterns"]]
    return [(p, re.compile(p.regex.encode()), [h.encode() for h in p.hints]) for p in items]


def _line_at(chunk: bytes, pos: int) -> tuple[int, int]:
    start = max(chunk.rfind(b"\n", 0, pos), chunk.rfind(b"\r", 0, pos)) + 1
    ends = [e for e in (chunk.find(b"\n", pos), chunk.find(b"\r", pos)) if e >= 0]
    return start, min(ends) if ends else len(chunk)


def match_errors(chunk: bytes, found: dict[str, PatternHit], per_hint: int = 20) -> None:
    """Record the first evidence (and a capped count) of each known pattern in `chunk`.

    Each pattern's literal hints are located with bytes.find; only the lines around them meet the regex,
    so a multi-megabyte log costs a few C-speed scans instead of a regex pass per pattern.
    """
    for pat, rx, hints in patterns():
        for hint in hints:
            pos, seen = 0, 0
            while seen < per_hint:
                hit = chunk.find(hint, pos)
                if hit < 0:
                    break
                start, end = _line_at(chunk, hit)
                line = chunk[start:end]
                pos = end + 1
                if rx.search(line):
                    seen += 1
                    entry = found.setdefault(pat.id, PatternHit())
                    entry.count += 1
                    entry.evidence = entry.evidence or line.decode(errors="replace").strip()[:300]


SEVERITY_ORDER = {"error": 0, "warning": 1, "harmless": 2}


def error_matches(
    found: dict[str, PatternHit], action: str | None = None, limit: int = 6
) -> list[ErrorMatch]:
    """Matched knowledge-base entries for `action`, errors first, each with its evidence line."""
    by_id = {
        p.id: p
        for p, _, _ in patterns()
        if action is None or p.actions is None or action in p.actions
    }
    out = [
        ErrorMatch(
            pattern=pid,
            severity=by_id[pid].severity,
            evidence=hit.evidence,
            cause=by_id[pid].cause,
            remedy=by_id[pid].remedy,
            next_call=by_id[pid].next_call,
        )
        for pid, hit in found.items()
        if pid in by_id
    ]
    out.sort(key=lambda e: SEVERITY_ORDER[e.severity])
    return out[:limit]
