"""Still open from issue 11, through the MCP client: a truncated jobs.db is said to be truncated (and kept
for recovery), never read as "no jobs"."""

import time
from pathlib import Path

import pytest

from tests.attacks.helpers import mcp_call

pytestmark = [pytest.mark.attack]


def _finished_jobs(n: int) -> Path:
    from tao_bevfusion.jobs.context import app_context

    ctx = app_context()
    for i in range(n):
        job = ctx.store.create(action="train", backend="local", spec_path="/s.yaml", spec_sha256="0",
                               results_dir=f"/runs/r{i}", data_root="/d")
        ctx.store.update(job.id, state="succeeded", finished_at=time.time())
        job.files(ctx.settings.home).dir.mkdir(parents=True, exist_ok=True)
    return ctx.store.path


def test_a_truncated_jobs_db_is_reported_and_kept(workspace: Path):
    db = _finished_jobs(3)
    assert len(mcp_call("list_jobs", {}).structured_content["jobs"]) == 3
    with open(db, "r+b") as fh:
        fh.truncate(0)
    for wal in (db.with_name("jobs.db-wal"), db.with_name("jobs.db-shm")):
        wal.unlink(missing_ok=True)
    r = mcp_call("list_jobs", {})
    assert r.is_error and "truncated" in r.content[0].text and "3 job folders" in r.content[0].text
    assert db.stat().st_size == 0  # kept as it was, no fresh schema written over it
