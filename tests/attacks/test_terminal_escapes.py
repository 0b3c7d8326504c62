"""Issue 17 item 11 through the CLI: escape sequences a job wrote (OSC 52 clipboard write, title change,
screen clear, 8-bit CSI, bidi override) never reach the terminal as control characters."""

import time
from pathlib import Path

import pytest

from tests.attacks.helpers import cli

pytestmark = [pytest.mark.attack]
EVIL = "\x1b]52;c;ZXZpbA==\x07\x1b]0;pwned title\x07\x1b[2J\x9b31m\u202eevil"
CONTROLS = ("\x1b", "\x07", "\x9b", "\u202e")


def _finished_job(workspace: Path) -> str:
    from tao_bevfusion.jobs.context import app_context

    ctx = app_context()
    home = workspace / "home"
    job = ctx.store.create(action="train", backend="local", spec_path=str(home / "s.yaml"), spec_sha256="0",
                           results_dir=str(workspace / "runs" / "r"), data_root=str(workspace))
    ctx.store.update(job.id, state="failed", started_at=time.time(), finished_at=time.time(),
                     verdict={"outcome": "failed", "reason": f"the job said: {EVIL}"})
    log = job.files(home).log
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(f"Epoch(train) [1][1/2] loss: 1.0\nRuntimeError: {EVIL}\n")
    return job.id


@pytest.mark.parametrize("argv", [("get-job",), ("get-job", "--json"), ("get-job-logs",),
                                  ("get-job-logs", "--grep", "Runtime"), ("list-jobs",)])
def test_cli_text_carries_no_control_sequences(workspace: Path, argv):
    job_id = _finished_job(workspace)
    extra = () if argv[0] == "list-jobs" else ("--job-id", job_id)
    rc, out, err = cli(*argv, *extra)
    assert rc == 0, err
    assert not any(c in out + err for c in CONTROLS), repr(out[-400:])
    if argv[0] == "get-job-logs":
        # the log page removes escape sequences at the source (issue 16); what is left is the job's text
        assert "evil" in out and "ZXZpbA==" not in out
