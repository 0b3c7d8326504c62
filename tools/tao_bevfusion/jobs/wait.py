"""The one wait loop: refresh a job until it ends or a deadline passes, reporting progress on the way.

`WaitLoop` holds the loop's logic; `wait_sync` runs it with time.sleep (CLI, cancel, run_action) and
`wait_async` with anyio (the MCP server, where a wait must be cancellable when the client goes away and
progress notifications need the event loop). Same steps, same deadline, same stopping rule.
"""

import time
from collections.abc import Awaitable, Callable

from tao_bevfusion.jobs.context import AppContext
from tao_bevfusion.jobs.engine import refresh
from tao_bevfusion.jobs.store import Job

MAX_WAIT = 45  # MCP clients time a call out at about 60 s


class WaitLoop:
    def __init__(
        self, job_id: str, seconds: float | None, ctx: AppContext, interval: float = 1.0
    ) -> None:
        self.job_id, self.ctx, self.interval = job_id, ctx, interval
        self.deadline = None if seconds is None else time.monotonic() + seconds
        self.steps = 0

    def step(self) -> Job:
        self.steps += 1
        return refresh(self.ctx.store.get(self.job_id), self.ctx)

    def finished(self, job: Job) -> bool:
        return job.terminal or (self.deadline is not None and time.monotonic() >= self.deadline)

    def pause(self) -> float:
        if self.deadline is None:
            return self.interval
        return min(self.interval, max(0.0, self.deadline - time.monotonic()))


def wait_sync(
    job_id: str,
    seconds: float | None,
    ctx: AppContext,
    on_progress: Callable[[Job], None] | None = None,
    interval: float = 1.0,
) -> Job:
    """Wait up to `seconds` (None: until the job ends)."""
    loop = WaitLoop(job_id, seconds, ctx, interval)
    job = loop.step()
    while not loop.finished(job):
        time.sleep(loop.pause())
        job = loop.step()
        if on_progress:
            on_progress(job)
    return job


async def wait_async(
    job_id: str,
    seconds: float,
    ctx: AppContext,
    on_progress: Callable[[int, Job], Awaitable[None]] | None = None,
) -> Job:
    import anyio

    loop = WaitLoop(job_id, seconds, ctx)
    job = await anyio.to_thread.run_sync(loop.step)
    while not loop.finished(job):
        await anyio.sleep(loop.pause())
        job = await anyio.to_thread.run_sync(loop.step)
        if on_progress:
            await on_progress(loop.steps, job)
    return job
