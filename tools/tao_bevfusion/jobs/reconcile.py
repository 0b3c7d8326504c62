"""Pending records whose submitter went away (a CLI or server killed during submit).

A record is pending from the moment it is written until the backend returns a handle. If the process that
submits it dies in between, nobody would ever set the handle: the container runs untracked, is never
removed, and its results dir stays locked. Every poll of such a record therefore looks for the job's
container by its labels (adopting it as running), and fails the record once the submitter is known to be
gone (same host, process dead) with nothing found, or after PENDING_LIMIT seconds in any case.
"""

import os
import socket
import time

from tao_bevfusion.core.states import Outcome
from tao_bevfusion.evidence.verdict import Verdict
from tao_bevfusion.jobs.context import AppContext
from tao_bevfusion.jobs.store import Job

PENDING_LIMIT = 600.0  # a submit that takes longer than this is not coming back
GRACE = (
    2.0  # after the submitter's death: an engine may still finish a create it had already received
)


def _start_ticks(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]  # field 22: start time (pid reuse guard)
    except (OSError, IndexError):
        return None


def submitter_token() -> str:
    """host:pid:start of this process, recorded with a pending job."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid) or ''}"


def submitter_gone(token: str | None) -> bool:
    """True when the recorded submitter ran on this host and is no longer the same live process."""
    if not token:
        return False
    host, _, rest = token.partition(":")
    pid_text, _, start = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    now_start = _start_ticks(int(pid_text))
    return now_start is None or (bool(start) and now_start != start)


def reconcile_pending(job: Job, ctx: AppContext) -> Job:
    """Adopt the job's container if it exists; fail (or cancel) the record when no submit is coming."""
    store = ctx.store
    backend = ctx.backend(job.backend)
    handle = backend.find(job.id, job.plan)
    age = time.time() - job.created_at
    gone = submitter_gone(job.meta.submitter) and age > GRACE
    if handle and gone and backend.poll(handle).state == "created":
        backend.cleanup(
            handle
        )  # created but never started, and its submitter is dead: it never will be
        handle = None
    if handle:
        store.update(
            job.id, state="running", handle=handle, started_at=job.started_at or time.time()
        )
        return store.get(job.id)
    if job.cancel_requested and (gone or age > GRACE):
        verdict = Verdict(
            outcome=Outcome.CANCELED, reason="canceled before the job started; nothing ran"
        )
    elif gone or age > PENDING_LIMIT:
        why = "the submitting process ended" if gone else f"no container after {int(age)} s"
        verdict = Verdict(
            outcome=Outcome.FAILED,
            reason=f"the launch was interrupted before the job started ({why}); "
            "nothing ran. Launch it again with the same call",
        )
    else:
        return job
    store.update(
        job.id,
        state="canceled" if verdict.outcome == "canceled" else "failed",
        verdict=verdict.model_dump(),
        finished_at=time.time(),
    )
    return store.get(job.id)
