"""Issue 17 items 7 and 8 on the real engine (stand-in image): a container that prints one huge log line or
writes a 40 MB status.json record. The sync keeps a bounded line, grep stays in budget, and the verdict and
the checkpoint choice still see every record after the huge one."""

import time
from pathlib import Path

import pytest

from tests.attacks.helpers import call, finish, launch, mcp_call

pytestmark = [pytest.mark.attack, pytest.mark.docker]
CUT = b"rest of an overlong line (over 1 MB) cut"


def test_a_huge_log_line_is_synced_cut_and_grep_finds_both_ends(converted: Path, workspace: Path):
    """16 MB on one stdout line: the synced job.log keeps its first MB and a cut marker (old code: the whole
    line, re-split for every 16 KB chunk, and its end lost when a sync came mid-line), and every line after
    it is there once."""
    job = launch("train", converted, overrides={"num_epochs": 1, "batch_size": 1},
                 env={"FAKE_TAO_FAULT": "long_log_line", "FAKE_TAO_LONG_MB": "16"})
    s = finish(job.job_id, timeout=240)
    assert s.state == "succeeded", s
    log = workspace / "home" / "jobs" / job.job_id / "job.log"
    data = log.read_bytes()
    assert log.stat().st_size < 4 << 20 and CUT in data, log.stat().st_size
    assert data.count(CUT) == 1 and data.count(b"\nafter the long line") == 1
    assert b"END-OF-THE-LONG-LINE" not in data and b"Z x" not in data  # no engine stamps inside the line
    page = call("get_job_logs", job_id=job.job_id, grep="overlong line|after the long")
    assert "after the long line" in page.text and "overlong line" in page.text, page.hint


def test_grep_over_a_64mb_line_keeps_its_budget(converted: Path, workspace: Path):
    """A 64 MB line appended to a finished job's log (anyone with the user's files can): grep over MCP
    searches it in slices and answers well inside the budget's order (old code: 49 s of re-copying)."""
    s = finish(launch("train", converted, overrides={"num_epochs": 1, "batch_size": 1}).job_id)
    log = workspace / "home" / "jobs" / s.job_id / "job.log"
    with open(log, "ab") as fh:
        for _ in range(64):
            fh.write(b"z" * (1 << 20))
        fh.write(b" NEEDLE-AT-THE-END\n")
    started = time.monotonic()
    r = mcp_call("get_job_logs", {"job_id": s.job_id, "grep": "NEEDLE-AT-THE-END|Traceback"})
    took = time.monotonic() - started
    assert not r.is_error and "NEEDLE-AT-THE-END" in r.content[0].text
    started = time.monotonic()
    r = mcp_call("get_job_logs", {"job_id": s.job_id, "grep": "(z+z+)+y", "offset": 0})
    took = max(took, time.monotonic() - started)
    assert not r.is_error and took < 15, (took, r.structured_content)


def test_a_40mb_status_record_is_skipped_not_the_end_of_reading(converted: Path):
    """Two 40 MB records (before training and after epoch 1's validation): the train still succeeds (old:
    "failed before the action started"), the skips are counted, and choose='best' picks epoch 2 (old: 1)."""
    job = launch("train", converted, overrides={"num_epochs": 2, "batch_size": 1},
                 env={"FAKE_TAO_FAULT": "long_status_record"})
    s = finish(job.job_id, timeout=240)
    assert s.state == "succeeded", s.verdict
    choice = call("resolve_parent_checkpoint", parent_job_id=job.job_id, choose="best")
    assert choice.epoch == 2, choice
    from tao_bevfusion.jobs.context import app_context

    assert app_context().store.get(job.job_id).findings.status.overlong == 2
