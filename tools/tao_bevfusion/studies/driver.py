"""The detached driver of one study: `python -m tao_bevfusion.studies.driver <study id>`, exactly one per study.

It holds flock(<study folder>/driver.lock) for life (the kernel frees it when the process dies, however it
dies), records its pid in driver.json, and loops: reconcile every running trial (refresh its job, feed new
validation AP11 from status.json to Optuna, prune, record its end) -> stop on a run of failures -> fill
free slots with new trials -> finish the study. Everything it knows is on disk (job store, Optuna storage,
status.json), so a restarted driver adopts live containers, records trials that ended while it was down,
and relaunches (from the exact last checkpoint) a trial whose container vanished. MCP servers come and go;
any tool call that finds an unfinished study without a live driver starts one (ensure_driver).
"""

import fcntl
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tao_bevfusion.core.errors import InputError
from tao_bevfusion.core.layout import StudyFiles
from tao_bevfusion.core.settings import Settings, with_package_on_pythonpath
from tao_bevfusion.jobs.context import AppContext
from tao_bevfusion.jobs.store import Job

LOCK_FILE = StudyFiles.DRIVER_LOCK
PID_FILE = StudyFiles.DRIVER_INFO


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


def driver_info(folder: Path) -> dict[str, Any]:
    try:
        info = json.loads((folder / PID_FILE).read_text())
    except (OSError, ValueError):
        info = {}
    return {"pid": info.get("pid"), "started_at": info.get("started_at"), "alive": driver_alive(folder)}


def spawn_driver(study_id: str, folder: Path, ctx: AppContext) -> int:
    """Start a driver in its own session (it outlives the MCP server); a second one exits at the lock."""
    env = dict(os.environ)
    env["TAO_BEVFUSION_HOME"] = str(ctx.settings.home)
    with_package_on_pythonpath(env)
    log = ctx.store.get(study_id).files(ctx.settings.home).log
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        argv = [sys.executable, "-m", "tao_bevfusion.studies.driver", study_id]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=str(folder),
                                start_new_session=True, close_fds=True)
    threading.Thread(target=proc.wait, daemon=True).start()  # reaped while this process lives: no zombie
    return proc.pid


def ensure_driver(job: Job, ctx: AppContext) -> bool:
    """Start a driver for an unfinished study that has none. True when one was started."""
    if job.kind != "study" or job.terminal:
        return False
    folder = Path(job.results_dir)
    if driver_alive(folder):
        return False
    spawn_driver(job.id, folder, ctx)
    return True


def ensure_drivers(ctx: AppContext) -> int:
    return sum(ensure_driver(j, ctx) for j in ctx.store.query(kind="study", state="running", limit=50))


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

    loop = StudyLoop(study_id, ctx)
    loop.log(f"driver {os.getpid()} started")
    errors = 0
    while True:
        try:
            if not loop.tick():
                break
            errors = 0
        except Exception as exc:  # one bad tick (a busy DB, an engine hiccup) must not end the study
            errors += 1
            loop.log(f"tick failed ({errors}): {exc.__class__.__name__}: {str(exc)[:300]}")
            if errors >= 30:
                return 1  # the next tool call starts a fresh driver
        time.sleep(tick_seconds() * (1 if errors == 0 else min(errors, 5)))
    loop.log("driver finished")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
