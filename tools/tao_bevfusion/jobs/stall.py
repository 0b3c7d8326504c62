"""Stall detection: a running job that wrote no log line and no status record for `stall_seconds`
(TAO_BEVFUSION_STALL_SECONDS) is reported with the likely cause and the next calls. The state stays
'running' (a slow first epoch or a long validation may still recover); the summary says stalled.

The newest output time is the later of the log's and status.json's mtimes: the container appends
status.json itself, the local backend appends the log itself, and the docker backend stamps the synced
log with the time of its newest line (not the time of the sync).
"""

import os
import time
from pathlib import Path

from tao_bevfusion.core.calls import call_text
from tao_bevfusion.core.layout import status_path
from tao_bevfusion.jobs.store import Job


def newest_output(job: Job, log: Path) -> float | None:
    times = []
    for path in (log, status_path(job.action, Path(job.results_dir), Path(job.data_root))):
        try:
            info = os.stat(path)
        except OSError:
            continue
        if info.st_size:  # an empty file was only created (by a sync), not written
            times.append(info.st_mtime)
    return max(times) if times else None


def elapsed(job: Job, now: float | None = None) -> float | None:
    if job.started_at is None:
        return None
    end = job.finished_at or (now or time.time())
    return round(max(0.0, end - job.started_at), 1)


def _cause(job: Job) -> str:
    gpus = len(job.plan.get("gpus") or []) if isinstance(job.plan, dict) else 0
    if job.progress.cur_iter is None and job.progress.epoch is None:
        if gpus > 1:
            return (
                "waiting before the first iteration, most likely at the distributed (NCCL/torchrun) rendezvous "
                "for a GPU or node that never joined"
            )
        return (
            "stuck before the first iteration: dataloader workers (shared memory: raise backend_options "
            "shm_size), a rendezvous, or a download with no network"
        )
    return "stopped mid-run: most likely a dataloader deadlock or a hung NCCL collective (or a full disk)"


HUNG_FACTOR = 10  # silent this many times its own seconds per iteration ...
HUNG_FLOOR = 120  # ... and at least this long: possibly hung


def own_pace(job: Job) -> float | None:
    """Seconds per iteration this job has shown so far (start to its newest output, over iterations done)."""
    done, start, last = job.progress.cur_iter, job.started_at, job.cursor.output_at
    if not done or not start or not last or last <= start:
        return None
    return (last - start) / done


def stall_note(job: Job, stall_seconds: int | None, now: float | None = None) -> str | None:
    """'stalled: ...' when a running job has been silent for longer than stall_seconds, or 'possibly hung: ...'
    when its iterations stopped for 10x its own pace (at least 2 minutes), long before the global limit."""
    if job.state != "running" or not stall_seconds:
        return None
    now = now or time.time()
    last = max(job.cursor.output_at or 0.0, job.started_at or 0.0)
    silent = now - last if last else 0.0
    pace = own_pace(job)
    hung_after = max(HUNG_FLOOR, HUNG_FACTOR * pace) if pace else None
    if pace and hung_after is not None and hung_after <= silent < stall_seconds:
        return (
            f"possibly hung: no new output for {int(silent)} s, {silent / pace:.0f}x its own pace "
            f"({pace:.1f} s per iteration over {job.progress.cur_iter} iterations); likely {_cause(job)}"
        )
    if not last or silent < stall_seconds:
        return None
    return (
        f"stalled: no new log line or status record for {int(silent)} s (limit {stall_seconds} s, "
        f"TAO_BEVFUSION_STALL_SECONDS); likely {_cause(job)}"
    )


def stall_steps(job: Job) -> list[str]:
    """See where it stopped; stop it if it stays silent (a train job then resumes from its newest checkpoint)."""
    return [
        call_text("get_job_logs", {"job_id": job.id, "tail_lines": 50}),
        call_text("cancel_job", {"job_id": job.id, "force": True}),
    ]
