"""Runs one job command on the host and records its exit code, so any later process can read it.

python -m tao_bevfusion.backends.local_runner <exit.json> -- <argv...>
"""

import json
import signal
import subprocess
import sys
from pathlib import Path

from tao_bevfusion.core.fsio import atomic_write


def main(argv: list[str]) -> int:
    exit_file, sep, *command = argv
    if sep != "--" or not command:
        print("usage: local_runner <exit.json> -- <argv...>", file=sys.stderr)
        return 2
    # The group gets SIGTERM on cancel and the child decides. A handler, not SIG_IGN: an ignored signal stays
    # ignored across exec, so a child started after SIG_IGN would never see the cancel.
    signal.signal(signal.SIGTERM, lambda *_: None)
    proc = subprocess.Popen(command)
    code = proc.wait()
    result = {"exit_code": code if code >= 0 else 128 - code, "signal": -code if code < 0 else None}
    atomic_write(Path(exit_file), json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
