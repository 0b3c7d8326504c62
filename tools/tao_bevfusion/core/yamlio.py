"""YAML in: safe loading only, bounded file size, bounded alias expansion (no billion-laughs).

Anchors and aliases are legal (NVIDIA's own templates use them); what is refused is a document whose
aliases expand past MAX_NODES when walked, which is what a YAML bomb does to every consumer.
"""

import hashlib
from pathlib import Path
from typing import Any

import yaml

from tao_bevfusion.core.errors import InputError, problem

MAX_YAML_BYTES = 1_000_000
MAX_NODES = 200_000


def _expanded_size(data: Any, budget: int) -> int:
    """Count nodes as a consumer would see them (aliases re-counted), stopping once over budget."""
    count, stack = 0, [data]
    while stack:
        item = stack.pop()
        count += 1
        if count > budget:
            return count
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


def fast_yaml(text: str) -> Any:
    """Safe-load YAML with libyaml's safe loader when available (no size bounds: see load_yaml_text)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(text, Loader=loader)


def load_yaml_text(text: str, origin: str = "<yaml>") -> Any:
    if len(text.encode()) > MAX_YAML_BYTES:
        raise InputError(
            problem(
                origin,
                f"YAML is larger than {MAX_YAML_BYTES} bytes",
                "pass a real spec file; TAO specs are a few KB",
            )
        )
    try:
        data = fast_yaml(text)
    except yaml.YAMLError as exc:
        raise InputError(
            problem(origin, f"not valid YAML: {exc}".replace("\n", " "), "fix the YAML syntax")
        ) from exc
    if _expanded_size(data, MAX_NODES) > MAX_NODES:
        raise InputError(
            problem(
                origin,
                f"YAML aliases expand to more than {MAX_NODES} nodes",
                "write the spec without recursive anchors/aliases",
            )
        )
    return data


def load_yaml_file(path: Path) -> Any:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(
            problem(str(path), f"cannot read: {exc.strerror}", "give an existing file")
        ) from exc
    if size > MAX_YAML_BYTES:
        raise InputError(
            problem(
                str(path),
                f"file is {size} bytes, over {MAX_YAML_BYTES}",
                "pass a real spec file; TAO specs are a few KB",
            )
        )
    return load_yaml_text(path.read_text(), origin=str(path))


def read_mapping(path: Path) -> dict[str, Any]:
    """A YAML mapping read for display or bookkeeping (a job's spec): {} when the file is missing, unreadable,
    over the bounds, or not a mapping. Bounded like every input, since the file may have been edited."""
    try:
        data = load_yaml_file(path)
    except (InputError, OSError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def load_recorded(path: Path, sha256: str | None) -> Any:
    """A job's spec as it was launched: the file's hash must still be the one recorded with the job, so a spec
    overwritten later (by hand or by another build) is never read back as this job's."""
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_YAML_BYTES + 1)
    except OSError as exc:
        raise InputError(
            problem(
                str(path),
                f"cannot read: {exc.strerror}",
                "the job's spec is gone; rebuild it with build_spec",
            )
        ) from exc
    if sha256 and hashlib.sha256(data).hexdigest() != sha256:
        raise InputError(
            problem(
                str(path),
                "the spec changed after the job was launched (its hash differs from "
                "the one recorded with the job)",
                "use a spec from build_spec; to rerun, build a "
                "new one (the job's own inputs are in its launch record)",
                code="SPEC_CHANGED",
            )
        )
    return load_yaml_text(data.decode(errors="replace"), origin=str(path))


def read_recorded_mapping(path: Path, sha256: str | None) -> dict[str, Any]:
    """load_recorded for display and bookkeeping: {} when missing, changed, over the bounds or not a mapping."""
    try:
        data = load_recorded(path, sha256)
    except (InputError, OSError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}
