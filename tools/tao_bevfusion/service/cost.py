"""What a launch would cost, before it runs: a study's or a plain train run's projected GPU-hours.

GPU-hours = GPUs x epochs x hours per epoch. Hours per epoch are measured on earlier succeeded train runs
of the same dataset when there are any, else TAO_BEVFUSION_EPOCH_HOURS (default 0.25 h, a rough figure
for KITTI on one recent data-centre GPU). Only train launches are costed; the others are short.
"""

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from tao_bevfusion.core.settings import skill_dir
from tao_bevfusion.core.yamlio import read_mapping
from tao_bevfusion.jobs.context import AppContext

if TYPE_CHECKING:
    from tao_bevfusion.jobs.launch import RunActionInput

EPOCH_HOURS_ENV = "TAO_BEVFUSION_EPOCH_HOURS"
DEFAULT_EPOCH_HOURS = 0.25


class LaunchCost(BaseModel):
    """The plan a person is asked to approve (shown in the form; its digest pins what may launch)."""

    study: bool = Field(description="True for an AutoML study.")
    what: str = Field(description="What will run, in words.")
    where: str = Field(description="Backend, GPUs and results folder.")
    trials: int = Field(description="Trials (1 for a plain run).")
    gpus: int = Field(description="GPUs in use at once.")
    gpu_hours: float = Field(description="Projected GPU-hours (expected).")
    max_gpu_hours: float = Field(description="Upper bound (every trial runs every epoch).")
    basis: str = Field(description="Where hours per epoch came from.")
    plan: dict[str, Any] = Field(
        default_factory=dict, description="The reviewed plan's defining fields."
    )

    def digest(self) -> str:
        data = self.model_dump(exclude={"basis", "plan"})  # what the person was shown
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[
            :32
        ]


def epoch_hours(data_root: str | None, ctx: AppContext) -> tuple[float, str]:
    """(wall hours per epoch, where the figure came from)."""
    spans = []
    for job in ctx.store.query(action="train", state="succeeded", kind="run", limit=50):
        epochs = job.meta.num_epochs or 0
        if job.data_root == data_root and epochs and job.started_at and job.finished_at:
            spans.append((job.finished_at - job.started_at) / 3600 / epochs)
    if spans:
        return sum(spans) / len(spans), f"measured on {len(spans)} earlier run(s) of this dataset"
    raw = os.environ.get(EPOCH_HOURS_ENV, "").strip()
    try:
        hours = float(raw) if raw else DEFAULT_EPOCH_HOURS
    except ValueError:
        hours = DEFAULT_EPOCH_HOURS
    return max(
        hours, 0.0
    ), f"{EPOCH_HOURS_ENV}={hours:g} h per epoch (no earlier run of this dataset)"


def _epochs(inp: "RunActionInput") -> int:
    over = inp.overrides or {}
    train = over.get("train") if isinstance(over.get("train"), dict) else {}
    for value in (
        over.get("num_epochs"),
        over.get("train.num_epochs"),
        (train or {}).get("num_epochs"),
    ):
        if isinstance(value, int) and value > 0:
            return value
    spec = (
        Path(inp.spec_path)
        if inp.spec_path
        else skill_dir() / "references" / "spec_template_train.yaml"
    )
    value = (read_mapping(spec).get("train") or {}).get("num_epochs")
    return value if isinstance(value, int) and value > 0 else 1


def _run_cost(inp: "RunActionInput", ctx: AppContext) -> LaunchCost:
    epochs = _epochs(inp)
    gpus = (len(inp.gpus) if inp.gpus is not None else (inp.num_gpus or 1)) * inp.num_nodes
    hours, basis = epoch_hours(inp.data_root, ctx)
    total = round(max(gpus, 1) * epochs * hours, 2)
    where = f"{inp.backend or 'docker'}, {gpus} GPU(s) on {inp.num_nodes} node(s), results {inp.results_dir or '<new>'}"
    return LaunchCost(
        study=False,
        what=f"one train run, {epochs} epochs",
        where=where,
        trials=1,
        gpus=gpus,
        gpu_hours=total,
        max_gpu_hours=total,
        basis=basis,
        plan=inp.model_dump(mode="json", exclude={"wait_seconds", "encryption_key"}),
    )


def _study_cost(inp: "RunActionInput", ctx: AppContext) -> LaunchCost | None:
    from tao_bevfusion.service.run import run_action

    review = run_action(inp.model_copy(update={"confirm": False, "wait_seconds": 0}), ctx).review
    if review is None:
        return None
    hours, basis = epoch_hours(inp.data_root, ctx)
    c, b = review.concurrency, review.budget
    gpus = c.concurrent * max(c.gpus_per_trial, 1) if any(c.gpu_slots) else 0
    space = ", ".join(p.key.rsplit(".", 1)[-1] for p in review.search_space)
    plan = review.model_dump(
        mode="json", exclude={"results_dir", "confirm_call", "notes", "cost_note"}
    )
    return LaunchCost(
        study=True,
        what=f"AutoML study ({review.algorithm}): {b.trials} trials x up to {b.epochs_per_trial} "
        f"epochs, searching {space}",
        where=f"{inp.backend or 'docker'}, {c.concurrent} trial(s) at once on "
        f"GPU slots {c.gpu_slots}, results {review.results_dir}",
        trials=b.trials,
        gpus=gpus,
        gpu_hours=round(review.estimated_cost_gpu_epochs * hours, 2),
        max_gpu_hours=round(review.max_cost_gpu_epochs * hours, 2),
        basis=basis,
        plan=plan,
    )


def launch_cost(inp: "RunActionInput", ctx: AppContext) -> LaunchCost | None:
    """None when the call launches nothing (dry run, a review, or not a train launch)."""
    if inp.dry_run or inp.action != "train":
        return None
    from tao_bevfusion.policy.automl import resolve_automl_policy

    decision = resolve_automl_policy("train", request=inp.request, automl_policy=inp.automl_policy)
    if decision.route == "direct":
        return _run_cost(inp, ctx)
    return _study_cost(inp, ctx) if inp.confirm else None
