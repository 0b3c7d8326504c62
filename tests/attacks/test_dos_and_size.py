"""Denial of service and size (issue 11): catastrophic regexes, grep that stops early, results far over
the 8 KB promise, alias bombs in resources."""

import json
import time
from pathlib import Path

import anyio
import pytest
from mcp import Client
from tao_bevfusion.server import mcp

from tests.attacks.helpers import call, finish, launch, mcp_call, mcp_resource

pytestmark = [pytest.mark.attack]
LIMIT = 8192


@pytest.fixture
def done_job(converted: Path, workspace: Path):
    """A finished train job and the path of its job.log (an attacker with the user's files may append)."""
    s = finish(launch("train", converted, overrides={"num_epochs": 1, "batch_size": 1}).job_id)
    return s.job_id, workspace / "home" / "jobs" / s.job_id / "job.log"


@pytest.mark.docker
def test_catastrophic_grep_is_bounded_and_does_not_block_others(done_job):
    """grep='(a+)+$' on a line of 27 a's (2^27 backtracking steps, seconds on re): the call returns in under
    3 s (an error or a bounded partial scan), and a concurrent list_jobs answers in under 1.5 s."""
    job_id, log = done_job
    with open(log, "ab") as fh:
        fh.write(b"a" * 27 + b"!\n")

    async def go():
        times = {}
        async with Client(mcp) as c:
            async def grep():
                t = time.monotonic()
                await c.call_tool("get_job_logs", {"job_id": job_id, "grep": "(a+)+$"})
                times["grep"] = time.monotonic() - t

            async def other():
                await anyio.sleep(0.3)
                t = time.monotonic()
                await c.call_tool("list_jobs", {})
                times["other"] = time.monotonic() - t
            async with anyio.create_task_group() as tg:
                tg.start_soon(grep)
                tg.start_soon(other)
        return times
    times = anyio.run(go)
    assert times["grep"] < 3 and times["other"] < 1.5, times


@pytest.mark.docker
def test_grep_scans_the_whole_log(done_job):
    """A 610 KB log with the Traceback at its end: grep finds it, and truncated is honest."""
    job_id, log = done_job
    with open(log, "ab") as fh:
        fh.write((b"filler line of an ordinary long training log " * 3 + b"\n") * 4500)
        fh.write(b"Traceback (most recent call last)\nRuntimeError: the end of the log\n")
    assert log.stat().st_size > 600_000
    page = call("get_job_logs", job_id=job_id, grep="Traceback|RuntimeError")
    assert "the end of the log" in page.text, (page.text[-300:], page.hint)


@pytest.mark.docker
def test_tail_with_small_max_bytes_returns_the_last_lines(done_job):
    job_id, log = done_job
    with open(log, "ab") as fh:
        fh.write((b"x" * 100 + b"\n") * 6000 + b"THE-LAST-LINE\n")
    page = call("get_job_logs", job_id=job_id, tail_lines=5, max_bytes=256)
    assert page.text.rstrip().endswith("THE-LAST-LINE"), page.text[-200:]


def test_two_thousand_unknown_keys_error_is_small(raw_root: Path):
    r = mcp_call("build_spec", {"action": "train", "data_root": str(raw_root),
                                "overrides": {f"train.bogus_{i}": i for i in range(2000)}})
    assert r.is_error and len(r.content[0].text) < LIMIT, len(r.content[0].text)
    assert "2000" in r.content[0].text  # the count of problems is stated


def test_dry_run_with_many_env_values_is_small_or_refused(raw_root: Path):
    env = {f"MY_VAR_{i}": "v" * 4000 for i in range(300)}
    r = mcp_call("run_action", {"action": "dataset_convert", "data_root": str(raw_root), "dry_run": True,
                                "gpus": [], "env": env})
    assert len(r.content[0].text) + len(json.dumps(r.structured_content or {})) < 64 * 1024


def test_huge_override_is_refused_at_input(raw_root: Path):
    """A 3 MB string in a free-form override: refused at input (a sane bound), with a short error. Decision:
    overrides as a whole are bounded (the refusal names the size), not echoed back in the result."""
    r = mcp_call("build_spec", {"action": "train", "data_root": str(raw_root),
                                "overrides": {"train.optimizer.type": "x" * 3_000_000}})
    size = len(r.content[0].text) + len(json.dumps(r.structured_content or {}))
    assert r.is_error and size < LIMIT, (r.is_error, size)


@pytest.mark.docker
def test_alias_bomb_spec_resource_is_bounded(done_job, workspace: Path):
    """The spec resource reads the file with the same bounded loader as inputs: fast, small, an error."""
    job_id, _ = done_job
    spec = Path(next(j for j in call("list_jobs").jobs if j.job_id == job_id).results_dir)
    spec_path = Path(call("get_job", job_id=job_id).model_dump().get("spec_path") or "")
    if not spec_path.is_file():
        spec_path = next((workspace / "home" / "specs").rglob("*.yaml"))
    bomb = "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n" \
           "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: [*e,*e,*e,*e,*e,*e,*e]\n"
    spec_path.write_text(bomb)
    del spec
    t = time.monotonic()
    try:
        res = mcp_resource(f"tao-bevfusion://jobs/{job_id}/spec", timeout=30)
        size = sum(len(getattr(c, "text", "") or "") for c in res.contents)
    except Exception:
        size = 0
    assert time.monotonic() - t < 2 and size < 64 * 1024, (time.monotonic() - t, size)
