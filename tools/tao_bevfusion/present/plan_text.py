"""The dry-run text: what will run, in the words of its backend (docker command, sbatch script, manifests),
compact enough to stay inside the 8 KB text budget with the rest of the result."""

import shlex
from typing import Any

PLAN_TEXT_LIMIT = 4500


def plan_lines(plan: Any) -> list[str]:
    """The exact launch: the equivalent shell command, then the sbatch script or the manifests when any."""
    cli = " ".join(shlex.quote(part) for part in plan.equivalent_cli or [])
    lines = [f"{plan.backend}: {cli}" if cli else f"{plan.backend}: {' '.join(plan.command)}"]
    devices = getattr(plan, "devices", None)
    lines.append(f"GPUs requested: {', '.join(devices)}" if devices else "GPUs requested: none")
    lines += [note for note in plan.notes if note.startswith("warning:")][:4]
    body = getattr(plan, "script", None) or getattr(plan, "yaml", None)
    if body:
        kind = "sbatch script" if getattr(plan, "script", None) else "manifests"
        kept = "\n".join(
            line for line in body.splitlines() if line.strip() and not line.lstrip().startswith("#")
        )
        if len(kept) > PLAN_TEXT_LIMIT:
            kept = (
                kept[:PLAN_TEXT_LIMIT] + "\n… (cut; the whole text is in structured content: plan)"
            )
        lines += [f"--- {kind} ---", kept]
    return lines
