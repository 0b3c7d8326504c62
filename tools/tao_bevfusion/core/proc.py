"""Our own detached helper processes (a study's driver, a run's watchdog): own session, output to a log,
outliving the server that started them."""

import subprocess
import sys
import threading
from pathlib import Path


def spawn_detached(module: str, arg: str, log: Path, cwd: Path, env: dict[str, str]) -> int:
    """`python -m module arg` in its own session, appending to `log`; returns its pid."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, arg],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(cwd),
            start_new_session=True,
            close_fds=True,
        )
    threading.Thread(target=proc.wait, daemon=True).start()  # reaped while this process lives
    return proc.pid
