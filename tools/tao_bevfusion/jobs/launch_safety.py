"""What run_action adds for run safety: the settings stored with the job, the cost projection and its
refusal, the deadline schedulers enforce, and the watchdog that enforces the rest (jobs/safety.py)."""

import math
from typing import Any

from tao_bevfusion.backends.base import Check, LaunchRequest
from tao_bevfusion.core.safety import RunSafety, SafetyInput
from tao_bevfusion.jobs import notes
from tao_bevfusion.jobs.context import AppContext
from tao_bevfusion.jobs.projection import CostProjection, project, refuse_over_limit
from tao_bevfusion.jobs.store import Job
from tao_bevfusion.jobs.watchdog import spawn_watchdog

DEADLINE_SLACK = 1.05  # schedulers stop hard at their limit: the plugin stops gracefully first


def settings_for(inp: SafetyInput, nodes: int, gpus_per_node: int) -> RunSafety:
    return RunSafety.from_input(inp, gpus=max(1, nodes) * max(1, gpus_per_node))


def projection(
    action: str, spec: dict[str, Any], data_root: str, nodes: int, ctx: AppContext
) -> CostProjection | None:
    if action != "train":
        return None
    return project(spec, data_root, nodes, ctx.store, notes.hyperparameters(spec, action))


def refuse_over_budget(cost: CostProjection | None, safety: RunSafety) -> None:
    """Before a launch: an InputError naming max_gpu_hours when the projection exceeds it."""
    if cost is not None:
        refuse_over_limit(cost, safety)


def budget_checks(cost: CostProjection | None, safety: RunSafety) -> list[Check]:
    """The projection as a preflight line (failed when above max_gpu_hours: a dry run shows it)."""
    if cost is None:
        return []
    over = safety.max_gpu_hours is not None and cost.gpu_hours > safety.max_gpu_hours
    message = f"projected {cost.gpu_hours:.2f} GPU-hours ({cost.hours:.2f} h x {cost.gpus} GPU(s)); {cost.source}"
    if over:
        return [
            Check(
                name="budget",
                ok=False,
                message=f"{message}; above max_gpu_hours={safety.max_gpu_hours:g}",
                fix=f"raise max_gpu_hours to at least {cost.gpu_hours:.2f}, or lower train.num_epochs",
            )
        ]
    return [Check(name="budget", ok=True, severity="info", message=message)]


def with_deadline(req: LaunchRequest, safety: RunSafety) -> LaunchRequest:
    limit = safety.limit_seconds()
    if limit is None:
        return req
    return req.model_copy(update={"deadline_seconds": math.ceil(limit * DEADLINE_SLACK)})


def record_fields(safety: RunSafety, req: LaunchRequest) -> dict[str, Any]:
    return {"safety": safety.model_dump(), "request": req.model_dump(mode="json")}


def start_watchdog(job: Job, ctx: AppContext) -> None:
    """Train runs get a watchdog (divergence is watched by default); other actions only with a limit."""
    safety = RunSafety.model_validate(job.meta.safety or {})
    if job.action == "train" or safety.limit_seconds() is not None:
        spawn_watchdog(job, ctx)
