"""The one cancel of a run: record the request, find the container, stop it; then wait for the verdict.

The request is recorded before the stop, so the exit code a stop causes (137, 143) reads as canceled.
Studies stop their trials (pruning, winding down, a cancelled study) with the same stop_run.
"""

from tao_bevfusion.jobs.context import AppContext
from tao_bevfusion.jobs.store import Job
from tao_bevfusion.jobs.wait import wait_sync

CANCEL_WAIT = 15  # seconds a cancel waits for the container to go and the verdict to be written


def stop_run(job: Job, force: bool, ctx: AppContext) -> str | None:
    """Ask the backend to stop a run (force: kill at once). Returns the handle stopped, if one was found."""
    ctx.store.update(job.id, cancel_requested=True)
    backend = ctx.backend(job.backend)
    handle = job.handle or backend.find(job.id, job.plan)
    if handle:
        backend.cancel(handle, force)
    return handle


def cancel_run(job: Job, force: bool, ctx: AppContext) -> tuple[str, str]:
    """Idempotent: a finished run is reported as it is; a running one is stopped. (state, message)."""
    if job.terminal:
        return job.state, f"already {job.state}; nothing to cancel"
    handle = stop_run(job, force, ctx)
    job = wait_sync(job.id, CANCEL_WAIT, ctx, interval=0.5)
    if not job.terminal and force and handle:
        ctx.backend(job.backend).cancel(handle, True)
    if job.state == "canceled":
        return job.state, "canceled"
    return job.state, f"stop requested; state {job.state} (retry with force=true to kill)"
