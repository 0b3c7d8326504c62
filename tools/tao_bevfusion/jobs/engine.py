"""A run's life after launch: refresh = poll the backend, sync and scan new output, decide the verdict.

State lives on disk (SQLite + per-job folders), so every call may come from a fresh process (the MCP
Inspector starts one per call) and jobs keep running when the server exits.
"""

import time
from pathlib import Path
from typing import Any

from tao_bevfusion.core.layout import status_path
from tao_bevfusion.core.states import Outcome
from tao_bevfusion.evidence.artifacts import check_artifacts
from tao_bevfusion.evidence.models import Evidence
from tao_bevfusion.evidence.scan import scan_log, scan_status
from tao_bevfusion.evidence.verdict import decide
from tao_bevfusion.jobs import hooks, notify, retention, retry, safety
from tao_bevfusion.jobs.context import AppContext
from tao_bevfusion.jobs.reconcile import reconcile_pending
from tao_bevfusion.jobs.secrets import job_secrets
from tao_bevfusion.jobs.stall import newest_output
from tao_bevfusion.jobs.store import Job


def refresh(job: Job, ctx: AppContext) -> Job:
    """Poll the backend, sync and scan new output, and finish the record when the run has ended; then the
    after-refresh hooks (jobs/hooks.py: e.g. the tracker export) see the job as it now is.

    Runs only: a job of another kind (a study) has no container of its own and is returned as it is; its own
    layer refreshes it (the tool layer dispatches by kind)."""
    job = _refresh(job, ctx)
    if job.kind == "run":
        hooks.refreshed(job, ctx)
    return job


def _refresh(job: Job, ctx: AppContext) -> Job:
    if job.terminal or job.kind != "run":
        return job
    if job.state == "pending" and not job.handle:
        job = reconcile_pending(job, ctx)
        if job.state == "pending" or job.terminal:
            return job
    store = ctx.store
    backend = ctx.backend(job.backend)
    handle = job.handle or backend.find(job.id, job.plan)
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
    scan_status(
        status_path(job.action, Path(job.results_dir), Path(job.data_root)),
        cursor,
        findings,
        progress,
        metrics,
        secrets=secrets,
        final=final,
    )
    cursor.output_at = newest_output(job, files.log)
    live = status.state in ("running", "created", "queued")
    state: dict[str, Any] = {}
    if live:  # queued: still pending
        state["state"] = "pending" if status.state == "queued" else "running"
    if status.state == "queued" and status.error and status.error != job.meta.waiting:
        state["meta"] = job.meta.model_copy(update={"waiting": status.error[:300]})
    if not job.handle:
        state["handle"] = (
            handle  # found by label; a stored handle is never rewritten (a retry may have replaced it)
        )
    store.update(
        job.id, cursor=cursor, findings=findings, progress=progress, metrics=metrics, **state
    )
    job = store.get(job.id)
    if live:
        return safety.enforce(ctx, job, backend, handle)
    return _finish(
        ctx,
        job,
        status.exit_code,
        status.oom_killed,
        container_missing=status.state == "missing",
        handle=handle,
        backend_error=status.error,
    )


def _finish(
    ctx: AppContext,
    job: Job,
    exit_code: int | None,
    oom: bool,
    container_missing: bool,
    handle: str | None = None,
    backend_error: str | None = None,
) -> Job:
    present, missing = check_artifacts(
        job.action,
        Path(job.results_dir),
        Path(job.data_root),
        job.started_at or job.created_at,
        job.meta.num_epochs,
        job.findings,
        job.meta.convert_mode,
    )
    verdict = decide(
        Evidence(
            exit_code=exit_code,
            oom_killed=oom,
            cancel_requested=job.cancel_requested,
            container_missing=container_missing,
            findings=job.findings,
            present=present,
            missing=missing,
        )
    )
    if job.meta.pruned and verdict.outcome == "canceled":
        verdict = verdict.model_copy(
            update={
                "outcome": "pruned",
                "reason": "pruned by its AutoML study (validation AP11 below the rung's cut)",
            }
        )
    verdict = safety.safety_verdict(job, verdict, backend_error)
    if retry.wanted(job, verdict, backend_error) and (
        again := retry.relaunch(ctx, job, verdict, handle)
    ):
        return again
    ended = ctx.store.update(
        job.id,
        state=Outcome(verdict.outcome).job_state,
        verdict=verdict.model_dump(),
        finished_at=time.time(),
    )
    if handle:
        ctx.backend(job.backend).cleanup(handle)
    retention.after_run(ctx, ctx.store.get(job.id))
    job = ctx.store.get(job.id)
    if ended:  # this process recorded the end: it tells the webhook (if any), once
        notify.job_ended(job)
    return job
