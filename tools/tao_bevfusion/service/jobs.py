"""get_job, cancel_job and list_jobs: each job handled by its kind (service/kinds.py)."""

from typing import Any

from pydantic import BaseModel, Field

from tao_bevfusion.core.errors import EngineError
from tao_bevfusion.jobs import hooks
from tao_bevfusion.jobs.context import AppContext, app_context
from tao_bevfusion.jobs.store import Job, check_job_id
from tao_bevfusion.present.compare import row_fields, sort_key
from tao_bevfusion.present.summary import JobSummary
from tao_bevfusion.service.kinds import kind_of


def get_job(job_id: str, ctx: AppContext | None = None) -> JobSummary:
    ctx = ctx or app_context()
    job = ctx.store.get(check_job_id(job_id))
    summary = kind_of(job).summary(job, ctx)
    return hooks.decorated(summary, ctx.store.get(job.id), ctx)  # e.g. the tracker's run URL


class CancelResult(BaseModel):
    job_id: str = Field(description="The job.")
    state: str = Field(
        description="Its state after the cancel (canceled, or the state it had already ended in)."
    )
    message: str = Field(description="What was done.")


def cancel_job(job_id: str, force: bool = False, ctx: AppContext | None = None) -> CancelResult:
    """Idempotent for runs: a finished run is reported as it is; a running one is stopped and recorded as
    canceled. A study stops every running trial."""
    ctx = ctx or app_context()
    job = ctx.store.get(check_job_id(job_id))
    state, message = kind_of(job).cancel(job, force, ctx)
    return CancelResult(job_id=job.id, state=state, message=message)


class JobListItem(BaseModel):
    job_id: str
    kind: str = Field(default="run", description="run (one action) or study (an AutoML search).")
    action: str
    state: str
    outcome: str | None
    results_dir: str
    created_at: float
    parent_job_id: str | None
    owner_id: str | None = Field(default=None, description="The study this job is a trial of.")
    note: str | None = Field(
        default=None, description="Why the state may be stale (refresh failed)."
    )
    created: str | None = Field(default=None, description="Created, UTC ISO 8601.")
    ended: str | None = Field(default=None, description="Ended, UTC ISO 8601 (null while running).")
    duration_s: float | None = Field(
        default=None, description="Run time in seconds (so far, while running)."
    )
    hyper: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "Key hyperparameters of the spec launched: epochs, lr, weight_decay, batch_size (per GPU), num_gpus."
        ),
    )
    best_AP11: float | None = Field(
        default=None, description="train: best validation AP11 (0-100)."
    )
    best_epoch: int | None = Field(default=None, description="train: the epoch of best_AP11.")


def _safe_refresh(job: Job, ctx: AppContext) -> tuple[Job, str | None]:
    """One job's trouble (a lost engine, a damaged log) never takes the listing of the others down."""
    try:
        return kind_of(job).refresh(job, ctx), None
    except (EngineError, OSError, ValueError) as exc:
        return job, f"not refreshed: {str(exc)[:160]}"


def list_jobs(
    state: str | None = None,
    action: str | None = None,
    limit: int = 20,
    ctx: AppContext | None = None,
    sort: str = "time",
) -> list[JobListItem]:
    ctx = ctx or app_context()
    out = []
    # Sorting by a metric ranks every recorded job (up to the store's cap), not only the newest `limit`.
    for job in ctx.store.query(state=state, action=action, limit=limit if sort == "time" else 1000):
        note = None
        if not job.terminal:
            job, note = _safe_refresh(job, ctx)
        out.append(
            JobListItem(
                job_id=job.id,
                kind=job.kind,
                action=job.action,
                state=job.state,
                outcome=job.verdict.get("outcome"),
                results_dir=job.results_dir,
                created_at=job.created_at,
                parent_job_id=job.parent_job_id,
                owner_id=job.owner_id,
                note=note,
                **row_fields(job),
            )
        )
    return sorted(out, key=sort_key(sort))[:limit]
