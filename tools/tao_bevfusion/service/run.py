"""run_action as a tool: a train with the AutoML policy on becomes a study (reviewed first); anything else is
one run, launched by jobs/launch.py with its parent resolved here, then waited on and summarized."""

from collections.abc import Callable
from typing import Any

from pydantic import Field

from tao_bevfusion.core.errors import InputError, problem
from tao_bevfusion.jobs import hooks
from tao_bevfusion.jobs.context import AppContext, app_context
from tao_bevfusion.jobs.launch import LaunchResult, RunActionInput, launch, submit_plan
from tao_bevfusion.jobs.store import Job
from tao_bevfusion.jobs.wait import wait_sync
from tao_bevfusion.present.study_summary import study_summary
from tao_bevfusion.present.summary import JobSummary, summarize
from tao_bevfusion.service.specs import resolve_parent
from tao_bevfusion.specbuild.build import BuildSpecInput
from tao_bevfusion.specbuild.parent import ParentRun
from tao_bevfusion.studies.gate import gate
from tao_bevfusion.studies.review import StudyReview


class RunActionResult(LaunchResult):
    summary: JobSummary | None = Field(default=None, description="The job as get_job reports it.")
    routing: dict[str, Any] | None = Field(
        default=None, description="The AutoML routing decision (train)."
    )
    review: StudyReview | None = Field(
        default=None,
        description=(
            "train with AutoML on: the study to confirm (search space, algorithm, budget, concurrency, cost, "
            "baseline, results folder, the exact confirming call)."
        ),
    )


def _parent(inp: RunActionInput, ctx: AppContext) -> ParentRun | None:
    if inp.spec_path or not inp.parent_job_id or not inp.data_root:
        return None  # a spec_path already holds its parent's checkpoint; no data_root is launch's error
    fields = {k: v for k, v in inp.model_dump().items() if k in BuildSpecInput.model_fields}
    return resolve_parent(BuildSpecInput.model_validate(fields), ctx)


def _plan_only(inp: RunActionInput, ctx: AppContext) -> LaunchResult:
    """run_action(action, plan_id): the dry run's plan, submitted as it was shown; nothing else may change it."""
    extra = sorted(inp.model_fields_set - {"plan_id", "action", "wait_seconds"})
    if extra:
        raise InputError(
            problem(
                extra[0],
                f"plan_id submits a dry run's plan exactly as shown, so {extra} cannot change it",
                "drop them, or make a new dry run with the new values",
            )
        )
    return submit_plan(str(inp.plan_id), inp.action, ctx)


def run_action(
    inp: RunActionInput,
    ctx: AppContext | None = None,
    on_progress: Callable[[Job], None] | None = None,
) -> RunActionResult:
    ctx = ctx or app_context()
    if inp.plan_id:
        launched = _plan_only(inp, ctx)
    else:
        gated = gate(
            inp, ctx
        )  # AutoML on: the study review, or the started study (studies/gate.py)
        if gated is not None:
            told = (
                hooks.launched(ctx.store.get(gated.job_id), inp.tracking, ctx)
                if gated.job_id
                else []
            )
            # A started study comes back as get_job shows it: its next_steps poll and stop it.
            started = study_summary(ctx.store.get(gated.job_id), ctx) if gated.job_id else None
            return RunActionResult(
                job_id=gated.job_id,
                state=gated.state,
                review=gated.review,
                routing=gated.routing,
                message=gated.message,
                summary=started,
                warnings=told,
            )
        launched = launch(inp, ctx, _parent(inp, ctx))
    result = RunActionResult(**dict(launched))
    if launched.job_id is None:
        return result
    job = ctx.store.get(launched.job_id)
    if inp.wait_seconds:
        job = wait_sync(job.id, inp.wait_seconds, ctx, on_progress)
    return result.model_copy(update={"state": job.state, "summary": summarize(job)})
