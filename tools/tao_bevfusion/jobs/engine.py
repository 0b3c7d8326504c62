"""A job's life after launch: refresh (poll + incremental scan + verdict), get, cancel, list.

State lives on disk (SQLite + per-job folders), so every call may come from a fresh process (the MCP
Inspector starts one per call) and jobs keep running when the server exits.
"""

import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from tao_bevfusion.core.errors import EngineError
from tao_bevfusion.core.layout import status_path
from tao_bevfusion.core.settings import AppContext, app_context
from tao_bevfusion.evidence.artifacts import check_artifacts
from tao_bevfusion.evidence.models import Evidence
from tao_bevfusion.evidence.scan import scan_log, scan_status
from tao_bevfusion.evidence.verdict import decide
from tao_bevfusion.jobs import notify
from tao_bevfusion.jobs.reconcile import reconcile_pending
from tao_bevfusion.jobs.stall import newest_output
from tao_bevfusion.jobs.store import Job, check_job_id
from tao_bevfusion.present.summary import JobSummary, job_secrets, summarize

OUTCOME_STATE = {"succeeded": "succeeded", "succeeded_with_teardown_crash": "succeeded", "failed": "failed",
                 "killed": "failed", "canceled": "canceled", "pruned": "canceled", "lost": "unknown"}


def refresh(job: Job, ctx: AppContext) -> Job:
    """Poll the backend, sync and scan new output, and finish the record when the job has ended."""
    if job.terminal:
        return job
    if job.kind == "study":  # a study has no container: its detached driver runs it (started when missing)
        from tao_bevfusion.studies.driver import ensure_driver

        ensure_driver(job, ctx)
        return ctx.store.get(job.id)
    if job.state == "pending" and not job.handle:
        job = reconcile_pending(job, ctx)
        if job.state == "pending" or job.terminal:
            return job
    store = ctx.store
    backend = ctx.backend(job.backend)
    handle = job.handle or backend.find(job.id)
    if handle is None:
        return _finish(ctx, job, None, False, container_missing=True)
    status = backend.poll(handle)
    files = job.files(ctx.settings.home)
    backend.sync_logs(handle, files.log)
    cursor, findings = job.cursor.model_copy(), job.findings.model_copy(deep=True)
    progress, metrics = job.progress.model_copy(), job.metrics.model_copy(deep=True)
    final = status.state in ("exited", "missing")
    secrets = job_secrets(job)
    scan_log(files.log, cursor, findings, progress, final=final, secrets=secrets)
    scan_status(status_path(job.action, Path(job.results_dir), Path(job.data_root)), cursor, findings, progress,
                metrics, secrets=secrets)
    cursor.output_at = newest_output(job, files.log)
    live = status.state in ("running", "created", "queued")
    state = {"state": "pending" if status.state == "queued" else "running"} if live else {}  # queued: still pending
    store.update(job.id, cursor=cursor, findings=findings, progress=progress, metrics=metrics, handle=handle, **state)
    job = store.get(job.id)
    if live:
        return job
    return _finish(ctx, job, status.exit_code, status.oom_killed, container_missing=status.state == "missing",
                   handle=handle)


def _finish(ctx: AppContext, job: Job, exit_code: int | None, oom: bool, container_missing: bool,
            handle: str | None = None) -> Job:
    present, missing = check_artifacts(job.action, Path(job.results_dir), Path(job.data_root),
                                       job.started_at or job.created_at, job.meta.num_epochs, job.findings,
                                       job.meta.convert_mode)
    verdict = decide(Evidence(exit_code=exit_code, oom_killed=oom, cancel_requested=job.cancel_requested,
                              container_missing=container_missing, findings=job.findings, present=present,
                              missing=missing))
    if job.meta.pruned and verdict.outcome == "canceled":
        verdict = verdict.model_copy(update={"outcome": "pruned", "reason": "pruned by its AutoML study "
                                             "(validation AP11 below the rung's cut)"})
    ended = ctx.store.update(job.id, state=OUTCOME_STATE[verdict.outcome], verdict=verdict.model_dump(),
                             finished_at=time.time())
    if handle:
        ctx.backend(job.backend).cleanup(handle)
    job = ctx.store.get(job.id)
    if ended:  # this process recorded the end: it tells the webhook (if any), once
        notify.job_ended(job)
    return job


def get_job(job_id: str, ctx: AppContext | None = None) -> JobSummary:
    ctx = ctx or app_context()
    job = ctx.store.get(check_job_id(job_id))
    if job.kind == "study":
        from tao_bevfusion.studies.status import study_summary

        return study_summary(job, ctx)
    return summarize(refresh(job, ctx), ctx.settings.stall_seconds)


class CancelResult(BaseModel):
    job_id: str = Field(description="The job.")
    state: str = Field(description="Its state after the cancel (canceled, or the state it had already ended in).")
    message: str = Field(description="What was done.")


def cancel_job(job_id: str, force: bool = False, ctx: AppContext | None = None) -> CancelResult:
    """Idempotent: a finished job is reported as it is; a running one is stopped and recorded as canceled."""
    from tao_bevfusion.jobs.wait import wait_sync

    ctx = ctx or app_context()
    store = ctx.store
    job = store.get(check_job_id(job_id))
    if job.kind == "study":
        from tao_bevfusion.studies.status import cancel_study

        return CancelResult(job_id=job.id, state=(done := cancel_study(job, force, ctx))[0], message=done[1])
    if job.terminal:
        return CancelResult(job_id=job.id, state=job.state, message=f"already {job.state}; nothing to cancel")
    store.update(job.id, cancel_requested=True)  # recorded before the stop, so exit 137 reads as canceled
    backend = ctx.backend(job.backend)
    handle = job.handle or backend.find(job.id)
    if handle:
        backend.cancel(handle, force)
    job = wait_sync(job.id, 15, ctx, interval=0.5)
    if not job.terminal and force and handle:
        backend.cancel(handle, True)
    return CancelResult(job_id=job.id, state=job.state, message="canceled" if job.state == "canceled" else
                        f"stop requested; state {job.state} (retry with force=true to kill)")


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
    note: str | None = Field(default=None, description="Why the state may be stale (refresh failed).")
    created: str | None = Field(default=None, description="Created, UTC ISO 8601.")
    ended: str | None = Field(default=None, description="Ended, UTC ISO 8601 (null while running).")
    duration_s: float | None = Field(default=None, description="Run time in seconds (so far, while running).")
    hyper: dict[str, Any] = Field(default_factory=dict, description=(
        "Key hyperparameters of the spec launched: epochs, lr, weight_decay, batch_size (per GPU), num_gpus."))
    best_AP11: float | None = Field(default=None, description="train: best validation AP11 (0-100).")
    best_epoch: int | None = Field(default=None, description="train: the epoch of best_AP11.")


def _safe_refresh(job: Job, ctx: AppContext) -> tuple[Job, str | None]:
    """One job's trouble (a lost engine, a damaged log) never takes the listing of the others down."""
    try:
        return refresh(job, ctx), None
    except (EngineError, OSError, ValueError) as exc:
        return job, f"not refreshed: {str(exc)[:160]}"


def list_jobs(state: str | None = None, action: str | None = None, limit: int = 20,
              ctx: AppContext | None = None, sort: str = "time") -> list[JobListItem]:
    from tao_bevfusion.present.compare import row_fields, sort_key

    ctx = ctx or app_context()
    out = []
    # Sorting by a metric ranks every recorded job (up to the store's cap), not only the newest `limit`.
    for job in ctx.store.query(state=state, action=action, limit=limit if sort == "time" else 1000):
        note = None
        if not job.terminal:
            job, note = _safe_refresh(job, ctx)
        out.append(JobListItem(job_id=job.id, kind=job.kind, action=job.action, state=job.state,
                               outcome=job.verdict.get("outcome"), results_dir=job.results_dir,
                               created_at=job.created_at, parent_job_id=job.parent_job_id, owner_id=job.owner_id,
                               note=note, **row_fields(job)))
    return sorted(out, key=sort_key(sort))[:limit]
