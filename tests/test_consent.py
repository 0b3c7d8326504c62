"""A person's yes before an expensive launch: the SDK client's elicitation callback answers accept, decline
and cancel on both protocol eras (elicitation/create on 2025-era, InputRequiredResult on 2026-07-28);
clients without elicitation keep review -> confirm=true unless the server requires elicitation; the
Inspector CLI (no elicitation) goes the same way."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import ElicitResult
from tao_bevfusion.jobs.context import app_context
from tao_bevfusion.jobs.launch import RunActionInput
from tao_bevfusion.jobs.wait import wait_sync
from tao_bevfusion.server import mcp
from tao_bevfusion.service.jobs import cancel_job, list_jobs
from tao_bevfusion.service.run import run_action

from tests.conftest import REPO, copy_sample

INSPECTOR = REPO / ".ci" / "node" / "node_modules" / ".bin" / "mcp-inspector"


@pytest.fixture(params=["auto", "legacy"])
def era(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def converted(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    standin = REPO / "tests" / "standin" / "bevfusion_standin.py"
    monkeypatch.setenv("TAO_BEVFUSION_LOCAL_CLI", json.dumps([sys.executable, str(standin)]))
    monkeypatch.setenv("TAO_BEVFUSION_AUTOML_TICK", "0.3")
    root = copy_sample(workspace / "kitti")
    job = run_action(RunActionInput(action="dataset_convert", data_root=str(root), backend="local"))
    assert wait_sync(job.job_id, 60, app_context()).state == "succeeded"
    return root


def study_args(root: Path) -> dict[str, Any]:
    return {"action": "train", "data_root": str(root), "backend": "local", "gpus": [], "overrides": {"batch_size": 1},
            "env": {"FAKE_TAO_ITER_SECONDS": "0.5"},
            "automl_settings": {"automl_max_recommendations": 2, "automl_max_concurrent": 1,
                                "automl_max_epochs": 2}}


class Person:
    """The elicitation callback: records each form and answers as told."""

    def __init__(self, action: str, content: dict[str, Any] | None = None) -> None:
        self.action, self.content, self.asked = action, content, []

    async def __call__(self, context: Any, params: Any) -> ElicitResult:
        self.asked.append(params)
        return ElicitResult(action=self.action, content=self.content if self.action == "accept" else None)


def launched() -> list[str]:
    return [j.job_id for j in list_jobs(limit=50) if j.action == "train"]


def stop_all() -> None:
    for job in list_jobs(limit=50):
        if job.state in ("pending", "running") and not job.owner_id:
            cancel_job(job.job_id, force=True)


@pytest.mark.parametrize("answer,content,started", [
    ("accept", {"approve": True}, True), ("decline", None, False), ("cancel", None, False),
    ("accept", {"approve": False}, False),
])
def test_a_study_starts_only_on_a_persons_accept(era: str, converted: Path, answer: str, content: Any,
                                                 started: bool):
    person = Person(answer, content)

    async def go() -> None:
        async with Client(mcp, mode=era, elicitation_callback=person) as c:
            assert c.protocol_version == ("2026-07-28" if era == "auto" else "2025-11-25")
            review = await c.call_tool("run_action", study_args(converted))
            assert review.structured_content["state"] == "review" and not person.asked  # the review asks nothing
            r = await c.call_tool("run_action", {**study_args(converted), "confirm": True})
            assert not r.is_error, r.content[0].text
            assert len(person.asked) == 1
            form = person.asked[0]
            for needle in ("AutoML study", "Trials: 2", "GPU-hours", "local"):
                assert needle in form.message
            assert form.requested_schema["properties"]["approve"]["type"] == "boolean"
            if started:
                assert r.structured_content["job_id"] and r.structured_content["state"] == "running"
            else:
                assert r.structured_content == {"job_id": None, "state": "declined",
                                                "message": r.content[0].text}
                assert "nothing was launched" in r.content[0].text and launched() == []
    try:
        anyio.run(go)
    finally:
        stop_all()


def test_bad_form_content_launches_nothing(converted: Path):
    async def go() -> None:
        for content in ({"approve": "maybe"}, {"approve": True, "extra": 1}):
            async with Client(mcp, mode="legacy", elicitation_callback=Person("accept", content)) as c:
                r = await c.call_tool("run_action", {**study_args(converted), "confirm": True})
                assert r.is_error and "nothing was launched" in r.content[0].text
        assert launched() == []
    anyio.run(go)


def test_an_expensive_plain_run_asks_and_a_cheap_one_does_not(era: str, converted: Path,
                                                              monkeypatch: pytest.MonkeyPatch):
    args = {"action": "train", "data_root": str(converted), "backend": "local", "automl_policy": "off",
            "gpus": ["0", "1"], "overrides": {"num_epochs": 20, "batch_size": 1}, "dry_run": False}
    person = Person("decline")

    async def go() -> None:
        async with Client(mcp, mode=era, elicitation_callback=person) as c:
            r = await c.call_tool("run_action", args)  # 2 GPUs x 20 epochs x 0.25 h = 10 GPU-hours > 8
            assert r.structured_content["state"] == "declined" and "10 GPU-hours" in person.asked[0].message
            monkeypatch.setenv("TAO_BEVFUSION_CONFIRM_GPU_HOURS", "50")
            r = await c.call_tool("run_action", {**args, "dry_run": True})
            assert r.structured_content["state"] == "planned" and len(person.asked) == 1
    anyio.run(go)
    assert launched() == []


def test_without_elicitation_confirm_true_works_unless_the_server_requires_a_person(
        converted: Path, monkeypatch: pytest.MonkeyPatch):
    async def go() -> None:
        async with Client(mcp) as c:
            monkeypatch.setenv("TAO_BEVFUSION_REQUIRE_ELICITATION", "1")
            r = await c.call_tool("run_action", {**study_args(converted), "confirm": True})
            assert r.is_error and "requires a person's approval" in r.content[0].text
            assert "nothing was launched" in r.content[0].text and launched() == []
            monkeypatch.delenv("TAO_BEVFUSION_REQUIRE_ELICITATION")
            r = await c.call_tool("run_action", {**study_args(converted), "confirm": True})
            assert r.structured_content["state"] == "running"  # today's review -> confirm=true path
    try:
        anyio.run(go)
    finally:
        stop_all()


def _inspector(workspace: Path, extra_env: dict[str, str], *method: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **extra_env}
    flags = [x for k, v in extra_env.items() for x in ("-e", f"{k}={v}")]
    cmd = [str(INSPECTOR), "--cli", *flags, *method, "--", sys.executable, "-m", "tao_bevfusion.cli", "serve"]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not INSPECTOR.exists() and not os.environ.get("CI"), reason="Inspector installed by .ci/run")
def test_inspector_cli_keeps_confirm_true_and_honours_the_requirement(converted: Path, workspace: Path):
    assert shutil.which("node"), "node is needed for the MCP Inspector"
    names = ("TAO_BEVFUSION_HOME", "TAO_BEVFUSION_ROOTS", "TAO_BEVFUSION_LOCAL_CLI", "TAO_BEVFUSION_AUTOML_TICK")
    env = {k: os.environ[k] for k in names}
    call = ("--method", "tools/call", "--tool-name", "run_action", "--tool-args-json",
            json.dumps({**study_args(converted), "confirm": True}), "--format", "json")
    refused = _inspector(workspace, {**env, "TAO_BEVFUSION_REQUIRE_ELICITATION": "1"}, *call)
    assert "requires a person's approval" in refused.stdout + refused.stderr and launched() == []
    started = _inspector(workspace, env, *call)
    assert started.returncode == 0, started.stderr[-2000:]
    result = json.loads(started.stdout)["result"]["structuredContent"]
    assert result["state"] == "running" and result["job_id"]
    stop_all()
