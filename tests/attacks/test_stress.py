"""Stress: parallel MCP clients (in-memory SDK, one event loop per thread) and CLI processes poll running
stand-in jobs on the real engine. No call may fail and no record may be lost. Prints clients x calls,
failures and p99 latency. Budget: MCP_CLIENTS x MCP_CALLS + CLI_CLIENTS x CLI_CALLS, about a minute."""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import anyio
import pytest
from mcp import Client
from tao_bevfusion.server import mcp

from tests.attacks.helpers import call, finish, launch
from tests.conftest import REPO

pytestmark = [pytest.mark.attack, pytest.mark.heavy, pytest.mark.docker]
MCP_CLIENTS, MCP_CALLS = 4, 15
CLI_CLIENTS, CLI_CALLS = 2, 4
JOBS = 2


def _mcp_client(job_ids: list[str], lat: list[float], failures: list[str]) -> None:
    async def go() -> None:
        async with Client(mcp) as c:
            for i in range(MCP_CALLS):
                name, args = [("get_job", {"job_id": job_ids[i % len(job_ids)]}), ("list_jobs", {}),
                              ("get_job_logs", {"job_id": job_ids[i % len(job_ids)], "tail_lines": 20})][i % 3]
                t = time.monotonic()
                r = await c.call_tool(name, args)
                lat.append(time.monotonic() - t)
                if r.is_error:
                    failures.append(f"{name}: {r.content[0].text[:200]}")
    try:
        anyio.run(go)
    except Exception as exc:
        failures.append(f"mcp client crashed: {exc!r}")


def _cli_client(job_ids: list[str], lat: list[float], failures: list[str]) -> None:
    for i in range(CLI_CALLS):
        argv = ["get-job", "--job-id", job_ids[i % len(job_ids)], "--json"] if i % 2 else ["list-jobs", "--json"]
        t = time.monotonic()
        p = subprocess.run([sys.executable, "-m", "tao_bevfusion.cli", *argv], cwd=REPO, env=dict(os.environ),
                           capture_output=True, text=True, timeout=120)
        lat.append(time.monotonic() - t)
        if p.returncode != 0:
            failures.append(f"cli {argv[0]}: rc {p.returncode}: {p.stderr[-200:]}")
        else:
            json.loads(p.stdout)


def test_parallel_clients_against_running_jobs(converted: Path, workspace: Path):
    ids = [launch("train", converted, overrides={"num_epochs": 4, "batch_size": 1},
                  results_dir=str(workspace / f"run{i}"), env={"FAKE_TAO_ITER_SECONDS": "0.5"}).job_id
           for i in range(JOBS)]
    lat: list[float] = []
    failures: list[str] = []
    threads = [threading.Thread(target=_mcp_client, args=(ids, lat, failures)) for _ in range(MCP_CLIENTS)]
    threads += [threading.Thread(target=_cli_client, args=(ids, lat, failures)) for _ in range(CLI_CLIENTS)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    wall = time.monotonic() - t0
    ordered = sorted(lat)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else float("nan")
    print(f"\nstress: {MCP_CLIENTS} MCP x {MCP_CALLS} + {CLI_CLIENTS} CLI x {CLI_CALLS} calls = {len(lat)} done "
          f"in {wall:.1f}s; failures {len(failures)}; p50 {ordered[len(ordered) // 2]:.3f}s p99 {p99:.3f}s")
    assert not failures, failures[:5]
    assert len(lat) == MCP_CLIENTS * MCP_CALLS + CLI_CLIENTS * CLI_CALLS
    outcomes = [finish(j, timeout=120) for j in ids]
    assert [o.state for o in outcomes] == ["succeeded"] * JOBS, [o.verdict for o in outcomes]
    listed = {j.job_id for j in call("list_jobs", limit=100).jobs}
    assert set(ids) <= listed  # no record lost (the convert job of the fixture is there too)
    assert len(listed) == JOBS + 1
