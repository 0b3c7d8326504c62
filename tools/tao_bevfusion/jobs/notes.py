"""What a launch tells the agent besides the plan: the warnings of every step (build, dataset, preflight),
the user's overrides as they landed, the lineage of a train job, the key hyperparameters of the spec,
and preflight figures taken from that spec (not from defaults)."""

from typing import Any

from tao_bevfusion.backends.base import Check
from tao_bevfusion.core.dotted import get_path

MAX_WARNINGS = 8
HYPER = {
    "epochs": "train.num_epochs",
    "lr": "train.optimizer.lr",
    "weight_decay": "train.optimizer.weight_decay",
    "batch_size": "dataset.train_dataset.batch_size",
    "num_gpus": "train.num_gpus",
}


def hyperparameters(spec: dict[str, Any], action: str) -> dict[str, Any]:
    """epochs, lr, weight decay, batch size (per GPU) and GPUs of the spec; only train has the first four."""
    out = {k: get_path(spec, p) for k, p in HYPER.items() if action == "train" or k == "num_gpus"}
    if action != "train" and action != "dataset_convert":
        out["num_gpus"] = get_path(spec, f"{action}.num_gpus")
    return {k: v for k, v in out.items() if v is not None}


def spec_preflight(checks: list[Check], spec: dict[str, Any], action: str) -> list[Check]:
    """Say the preflight's GPU advice in the figures of the spec being launched."""
    batch = get_path(spec, "dataset.train_dataset.batch_size") if action == "train" else None
    gpus = get_path(spec, f"{action}.num_gpus")
    out = []
    for c in checks:
        if c.name == "gpu_memory" and action == "train" and isinstance(batch, int):
            advice = (
                "fits the advice"
                if batch <= 2
                else "lower it with overrides={'batch_size': 1} (or 2)"
            )
            c = c.model_copy(
                update={
                    "message": f"{c.message.split(';')[0]}; the spec's batch_size is {batch} per "
                    f"GPU x {gpus} GPU(s): {advice}"
                }
            )
        elif c.name == "gpu_count" and isinstance(gpus, int):
            c = c.model_copy(update={"message": f"the spec runs on {gpus} GPU(s); " + c.message})
        out.append(c)
    return out


def warning_lines(build_warnings: list[str] | None, checks: list[Check]) -> list[str]:
    """Build and preflight warnings, capped, for the text digest."""
    lines = [f"warning: {w}" for w in build_warnings or []]
    lines += [
        f"warning: {c.name}: {c.message}" + (f" -> {c.fix}" if c.fix else "")
        for c in checks
        if c.ok and c.severity == "warning"
    ]
    if len(lines) > MAX_WARNINGS:
        lines = [
            *lines[:MAX_WARNINGS],
            f"(+{len(lines) - MAX_WARNINGS} more warnings in structured content)",
        ]
    return [line[:400] for line in lines]


def override_lines(overrides: list[dict[str, Any]] | None, lineage: str | None) -> list[str]:
    lines = [lineage] if lineage else []
    if overrides:
        shown = ", ".join(f"{o['path']}={o['value']!r}" for o in overrides[:12])
        lines.append(
            f"your overrides in the spec: {shown}" + (" ..." if len(overrides) > 12 else "")
        )
    return [line[:600] for line in lines]
