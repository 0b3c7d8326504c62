"""The detached watchdog of one run: `python -m tao_bevfusion.jobs.watchdog <job id>`.

It refreshes the job every few seconds until it ends, so its limits, divergence stop and infrastructure
retries (jobs/safety.py, jobs/retry.py) hold on docker and local even when no one calls get_job. One per job:
it holds flock(<job folder>/watchdog.lock) for life. Study trials have none (their study's driver refreshes
them). It is a convenience, not the only enforcer: every refresh (get_job, list_jobs, wait) enforces too.
"""

import fcntl
import os
import sys
import time

from tao_bevfusion.core.proc import spawn_detached
from tao_bevfusion.core.settings import Settings, with_package_on_pythonpath
from tao_bevfusion.jobs.context import AppContext
from tao_bevfusion.jobs.store import Job

TICK_ENV = "TAO_BEVFUSION_WATCHDOG_TICK"
LOCK_FILE = "watchdog.lock"


def tick_seconds() -> float:
    try:
        return max(0.2, float(os.environ.get(TICK_ENV, "2")))
    except ValueError:
        return 2.0


def spawn_watchdog(job: Job, ctx: AppContext) -> int:
    """Start the watchdog in its own session (it outlives the MCP server and the CLI call)."""
    env = dict(os.environ)
    env["TAO_BEVFUSION_HOME"] = str(ctx.settings.home)
    with_package_on_pythonpath(env)
    folder = job.files(ctx.settings.home).dir
    folder.mkdir(parents=True, exist_ok=True)
    return spawn_detached(
        "tao_bevfusion.jobs.watchdog", job.id, folder / "watchdog.log", folder, env
    )


def main(argv: list[str]) -> int:
    from tao_bevfusion.jobs.engine import refresh

    ctx = AppContext(Settings.from_env())
    job = ctx.store.get(argv[0])
    lock = open(job.files(ctx.settings.home).dir / LOCK_FILE, "a")  # noqa: SIM115 - held for life
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0  # another watchdog runs this job
    errors = 0
    while not job.terminal and not job.owner_id:  # a study trial is refreshed by its study's driver
        if not ctx.settings.home.exists():
            return 0  # the state dir is gone (a test's temporary home): nothing left to watch
        time.sleep(tick_seconds() * (1 if errors == 0 else min(errors, 5)))
        try:
            job = refresh(ctx.store.get(job.id), ctx)
            errors = 0
        except Exception as exc:  # a busy DB or an engine hiccup must not end the watch
            errors += 1
            print(
                f"refresh failed ({errors}): {exc.__class__.__name__}: {str(exc)[:200]}", flush=True
            )
            if errors >= 60:
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
