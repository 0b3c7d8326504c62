"""The detached driver of one study: `python -m tao_bevfusion.studies.driver <study id>`, exactly one per study.

It holds flock(<study folder>/driver.lock) for life (the kernel frees it when the process dies, however it
dies), records its pid in driver.json, and loops: reconcile every running trial (refresh its job, feed new
validation AP11 from status.json to Optuna, prune, record its end) -> stop on a run of failures -> fill
free slots with new trials -> finish the study. Everything it knows is on disk (job store, Optuna storage,
status.json), so a restarted driver adopts live containers, records trials that ended while it was down,
and relaunches (from the exact last checkpoint) a trial whose container vanished. MCP servers come and go;
any tool call that finds an unfinished study without a live driver starts one (ensure_driver).
"""

import contextlib
import errno
import fcntl
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from tao_bevfusion.core.errors import InputError
from tao_bevfusion.core.layout import StudyFiles
from tao_bevfusion.core.proc import spawn_detached
from tao_bevfusion.core.settings import Settings, with_package_on_pythonpath
from tao_bevfusion.jobs.context import AppContext
from tao_bevfusion.jobs.store import Job

LOCK_FILE = StudyFiles.DRIVER_LOCK
PID_FILE = StudyFiles.DRIVER_INFO
MAX_TICK_ERRORS = (
    30  # ticks failing in a row before the driver exits (the next poll starts another)
)


def tick_seconds() -> float:
    try:
        return Settings.from_env().automl_tick
    except InputError:
        return 2.0


def driver_alive(folder: Path) -> bool:
    """True while some process holds the study's driver lock."""
    lock = folder / LOCK_FILE
    if not lock.exists():
        return False
    with open(lock, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
    return False


def _pid_file(folder: Path) -> dict[str, Any]:
    try:
        info = json.loads((folder / PID_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def driver_info(folder: Path) -> dict[str, Any]:
    info = _pid_file(folder)
    out = {
        "pid": info.get("pid"),
        "started_at": info.get("started_at"),
        "alive": driver_alive(folder),
    }
    if info.get("error"):
        out["error"] = str(info["error"])[:600]
    return out


def spawn_driver(study_id: str, folder: Path, ctx: AppContext) -> int:
    """Start a driver in its own session (it outlives the MCP server); a second one exits at the lock."""
    env = dict(os.environ)
    env["TAO_BEVFUSION_HOME"] = str(ctx.settings.home)
    with_package_on_pythonpath(env)
    log = ctx.store.get(study_id).files(ctx.settings.home).log
    log.parent.mkdir(parents=True, exist_ok=True)
    return spawn_detached("tao_bevfusion.studies.driver", study_id, log, folder, env)


def ensure_driver(job: Job, ctx: AppContext) -> bool:
    """Start a driver for an unfinished study that has none. True when one was started."""
    if job.kind != "study" or job.terminal:
        return False
    folder = Path(job.results_dir)
    if driver_alive(folder):
        return False
    error = _pid_file(folder).get("error")
    if (
        error
    ):  # the last driver gave up: record its cause instead of respawning one that dies the same way
        ctx.store.update(
            job.id,
            state="failed",
            verdict={"outcome": "failed", "reason": str(error)[:600]},
            finished_at=time.time(),
        )
        return False
    spawn_driver(job.id, folder, ctx)
    return True


def ensure_drivers(ctx: AppContext) -> int:
    return sum(
        ensure_driver(j, ctx) for j in ctx.store.query(kind="study", state="running", limit=50)
    )


def main(argv: list[str]) -> int:
    study_id = argv[0]
    ctx = AppContext(Settings.from_env())
    job = ctx.store.get(study_id)
    folder = Path(job.results_dir)
    lock = open(folder / LOCK_FILE, "a")  # noqa: SIM115 - held for the life of the process
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0  # another driver runs this study
    (folder / PID_FILE).write_text(json.dumps({"pid": os.getpid(), "started_at": time.time()}))
    from tao_bevfusion.studies.loop import StudyLoop

    try:
        loop = StudyLoop(study_id, ctx)
    except (
        Exception
    ) as exc:  # study.db lost or unreadable, a full disk: no driver can ever run this study
        give_up(study_id, folder, ctx, f"cannot open the study: {_cause(exc)}")
        return 1
    loop.log(f"driver {os.getpid()} started")
    errors = 0
    while True:
        try:
            if not loop.tick():
                break
            errors = 0
        except (
            Exception
        ) as exc:  # one bad tick (a busy DB, an engine hiccup) must not end the study
            errors += 1
            loop.log(f"tick failed ({errors}): {_cause(exc)}")
            if fatal(exc) and errors >= 2:
                give_up(
                    study_id,
                    folder,
                    ctx,
                    f"{errors} ticks in a row failed, the last with {_cause(exc)}",
                )
                return 1
            if errors >= MAX_TICK_ERRORS:
                return 1  # the next tool call starts a fresh driver
        time.sleep(tick_seconds() * (1 if errors == 0 else min(errors, 5)))
    loop.log("driver finished")
    from tao_bevfusion.jobs import hooks

    hooks.refreshed(
        ctx.store.get(study_id), ctx
    )  # the study's end reaches the hooks (e.g. its tracker run)
    return 0


FATAL_ERRNO = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}
FATAL_TEXT = (
    "database or disk is full",
    "readonly database",
    "no such table",
    "disk i/o error",
    "file is not a database",
    "database disk image is malformed",
)


def fatal(exc: BaseException) -> bool:
    """An error no retry cures by itself (a full or read-only disk, a lost or damaged study.db)."""
    if isinstance(exc, OSError) and exc.errno in FATAL_ERRNO:
        return True
    text = str(exc).lower()
    return any(t in text for t in FATAL_TEXT)


def _cause(exc: BaseException) -> str:
    return f"{exc.__class__.__name__}: {str(exc)[:300]}"


def give_up(study_id: str, folder: Path, ctx: AppContext, cause: str) -> None:
    """End the study failed with the cause, stopping its running trials; finished trials' results (trials.json,
    best.json, their jobs) stay as they are. Each step is tried on its own: on a full disk some may fail."""
    from tao_bevfusion.jobs.cancel import stop_run

    reason = (
        f"the study driver cannot work ({cause}); trials that finished keep their results. Fix the "
        "cause (disk space, the study folder), then run a new study"
    )
    print(f"[{time.strftime('%H:%M:%S')}] driver error: {reason}", flush=True)
    with contextlib.suppress(OSError, ValueError):
        (folder / PID_FILE).write_text(
            json.dumps({"pid": os.getpid(), "error": reason, "failed_at": time.time()})
        )
    try:
        ctx.store.update(
            study_id,
            state="failed",
            verdict={"outcome": "failed", "reason": reason},
            finished_at=time.time(),
        )
        for job in ctx.store.query(owner_id=study_id, state="running", limit=100):
            stop_run(job, True, ctx)
    except Exception as exc:  # the poller records the error from driver.json instead
        print(f"driver error: could not record the failure: {_cause(exc)}", flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
