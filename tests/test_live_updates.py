"""Pushed updates for real: the SDK client subscribes to a job's status resource on both protocol eras
(subscriptions/listen on 2026-07-28, resources/subscribe on 2025-era) and hears the job's end without
polling; bad URIs are protocol errors. The webhook posts to a local HTTP receiver on 127.0.0.1."""

import itertools
import json
import sys
import threading
import time
import warnings
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, MCPDeprecationWarning
from mcp.shared.exceptions import MCPError
from mcp.types import ResourceUpdatedNotification
from tao_bevfusion.jobs.context import app_context
from tao_bevfusion.jobs.launch import RunActionInput
from tao_bevfusion.jobs.wait import wait_sync
from tao_bevfusion.server import mcp
from tao_bevfusion.service.jobs import get_job
from tao_bevfusion.service.run import run_action

from tests.conftest import REPO, copy_sample

TERMINAL = ("succeeded", "failed", "canceled", "unknown")


@pytest.fixture
def local_kitti(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    standin = REPO / "tests" / "standin" / "bevfusion_standin.py"
    monkeypatch.setenv("TAO_BEVFUSION_LOCAL_CLI", json.dumps([sys.executable, str(standin)]))
    monkeypatch.setenv("TAO_BEVFUSION_WATCH_SECONDS", "0.2")
    monkeypatch.setenv("TAO_BEVFUSION_UPDATE_GAP_SECONDS", "1.0")
    monkeypatch.setenv("TAO_BEVFUSION_AUTOML_TICK", "0.3")
    root = copy_sample(workspace / "kitti")
    job = run_action(RunActionInput(action="dataset_convert", data_root=str(root), backend="local"))
    assert wait_sync(job.job_id, 60, app_context()).state == "succeeded"
    return root


def train(root: Path, **kw: Any) -> str:
    env = {"FAKE_TAO_ITER_SECONDS": "0.15", **kw.pop("env", {})}
    r = run_action(RunActionInput(action="train", data_root=str(root), backend="local", automl_policy="off",
                                  overrides={"num_epochs": 3, "batch_size": 1}, env=env, **kw))
    assert r.job_id
    return r.job_id


def test_listen_on_2026_hears_the_end_coalesced(local_kitti: Path):
    job_id = train(local_kitti)
    uri = f"tao-bevfusion://jobs/{job_id}/status"

    async def go() -> None:
        async with Client(mcp) as c:
            assert c.protocol_version == "2026-07-28"
            assert c.server_capabilities.resources.subscribe
            stamps: list[float] = []
            async with c.listen(resource_subscriptions=[uri]) as sub:
                with anyio.fail_after(90):
                    async for event in sub:
                        assert event.uri == uri
                        stamps.append(time.monotonic())
                        if get_job(job_id).state in TERMINAL:
                            break
            assert len(stamps) >= 2  # epochs moved, then the end
            assert all(b - a >= 0.9 for a, b in itertools.pairwise(stamps))  # at most one per gap
            text = (await c.read_resource(uri)).contents[0].text
            assert '"Train finished successfully."' in text or "finished" in text.lower()
    anyio.run(go)


def test_resources_subscribe_on_2025_hears_the_end(local_kitti: Path):
    job_id = train(local_kitti)
    uri = f"tao-bevfusion://jobs/{job_id}/status"
    heard: list[str] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            heard.append(str(message.params.uri))

    async def go() -> None:
        async with Client(mcp, mode="legacy", message_handler=on_message) as c:
            assert c.server_capabilities.resources.subscribe
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                await c.subscribe_resource(uri)
            with anyio.fail_after(90):
                while not (heard and get_job(job_id).state in TERMINAL):
                    await anyio.sleep(0.2)
            assert set(heard) == {uri}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                await c.unsubscribe_resource(uri)
    anyio.run(go)


@pytest.mark.parametrize("uri,needle", [
    ("tao-bevfusion://jobs/nope/status", "only tao-bevfusion://jobs/<job id>/status"),
    ("tao-bevfusion://jobs/j0123456789abcdef/status", "list_jobs"),
    ("tao-bevfusion://jobs/j0123456789abcdef/log", "only tao-bevfusion://jobs/<job id>/status"),
])
def test_bad_status_uris_are_clear_errors_on_both_eras(workspace: Path, uri: str, needle: str):
    async def go() -> None:
        async with Client(mcp) as c:
            with pytest.raises(MCPError, match="cannot subscribe"):
                async with c.listen(resource_subscriptions=[uri]):
                    pass
        async with Client(mcp, mode="legacy") as c:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                with pytest.raises(MCPError) as err:
                    await c.subscribe_resource(uri)
            assert needle in str(err.value)
    anyio.run(go)


class Receiver:
    """A webhook receiver on 127.0.0.1 recording each JSON body."""

    def __init__(self) -> None:
        got = self.got = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def wait(self, event: str, seconds: float = 30, job_id: str | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            found = [g for g in self.got if g["event"] == event and job_id in (None, g["job_id"])]
            if found:
                return found[-1]
            time.sleep(0.1)
        raise AssertionError(f"no {event} in {self.got}")


def test_webhook_posts_ends_and_study_milestones_without_secrets(local_kitti: Path,
                                                                 monkeypatch: pytest.MonkeyPatch):
    receiver = Receiver()
    monkeypatch.setenv("TAO_BEVFUSION_NOTIFY_URL", receiver.url)
    job_id = train(local_kitti, encryption_key="k3y-secret-webhook")
    assert wait_sync(job_id, 90, app_context()).state == "succeeded"
    ended = receiver.wait("job.ended")
    assert ended["job_id"] == job_id and ended["outcome"] == "succeeded" and ended["epoch"] == 3
    failed = train(local_kitti, env={"FAKE_TAO_FAULT": "fail_at_iter"})
    assert wait_sync(failed, 90, app_context()).state == "failed"
    assert receiver.wait("job.ended", job_id=failed)["outcome"] == "failed"
    study = run_action(RunActionInput(
        action="train", data_root=str(local_kitti), backend="local", gpus=[], confirm=True,
        overrides={"batch_size": 1}, env={"FAKE_TAO_ITER_SECONDS": "0.05"},
        automl_settings={"automl_algorithm": "random", "automl_max_recommendations": 2,
                         "automl_max_concurrent": 1, "automl_max_epochs": 2}))
    assert receiver.wait("study.new_best", 120)["job_id"] == study.job_id
    assert receiver.wait("study.half_done", 120)["trials_total"] == 2
    assert receiver.wait("study.ended", 120)["state"] == "succeeded"
    assert "k3y-secret-webhook" not in json.dumps(receiver.got)
    assert len([g for g in receiver.got if g["event"] == "job.ended"]) == 2  # trials post no job.ended
    receiver.server.shutdown()


def test_a_bad_or_failing_webhook_never_stops_a_job(local_kitti: Path, monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture):
    from tao_bevfusion.jobs import notify

    monkeypatch.setattr(notify, "BACKOFF", 0.05)
    monkeypatch.setenv("TAO_BEVFUSION_NOTIFY_URL", "ftp://127.0.0.1/hook")
    assert wait_sync(train(local_kitti), 90, app_context()).state == "succeeded"
    assert notify.notify_url() is None and notify.notify_url() is None
    assert sum("not an http(s) URL" in r.message for r in caplog.records) == 1  # reported once
    closed = HTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = closed.server_port
    closed.server_close()  # nothing listens there
    monkeypatch.setenv("TAO_BEVFUSION_NOTIFY_URL", f"http://user:pw@127.0.0.1:{port}/hook")
    for _ in range(2):
        started = time.monotonic()
        assert wait_sync(train(local_kitti), 90, app_context()).state == "succeeded"
        assert time.monotonic() - started < 60
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any("failed 3 times" in r.message for r in caplog.records):
        time.sleep(0.1)
    failures = [r.message for r in caplog.records if "failed 3 times" in r.message]
    assert len(failures) == 1 and "pw" not in failures[0]  # once, and without the URL's credentials


def test_the_servers_poller_tells_the_webhook_of_an_end_nobody_asked_about(local_kitti: Path,
                                                                          monkeypatch: pytest.MonkeyPatch):
    receiver = Receiver()
    monkeypatch.setenv("TAO_BEVFUSION_NOTIFY_URL", receiver.url)
    monkeypatch.setenv("TAO_BEVFUSION_POLL_SECONDS", "0.5")

    async def go() -> None:
        async with Client(mcp) as c:  # connected, but never asks about the job again
            r = await c.call_tool("run_action", {"action": "train", "data_root": str(local_kitti), "backend": "local",
                                                 "automl_policy": "off", "env": {"FAKE_TAO_ITER_SECONDS": "0.05"},
                                                 "overrides": {"num_epochs": 2, "batch_size": 1}})
            job_id = r.structured_content["job_id"]
            with anyio.fail_after(90):
                while not [g for g in receiver.got if g.get("job_id") == job_id]:
                    await anyio.sleep(0.2)
            assert receiver.got[-1]["event"] == "job.ended" and receiver.got[-1]["outcome"] == "succeeded"
    anyio.run(go)
    receiver.server.shutdown()


def test_subscriptions_end_with_the_stream_and_the_session(local_kitti: Path, monkeypatch: pytest.MonkeyPatch):
    from tao_bevfusion.mcpext import updates

    watchers: list[updates.StatusWatcher] = []
    original = updates.StatusWatcher.__init__

    def recording(self: updates.StatusWatcher, bus: Any) -> None:
        original(self, bus)
        watchers.append(self)

    monkeypatch.setattr(updates.StatusWatcher, "__init__", recording)
    job_id = train(local_kitti)
    uri = f"tao-bevfusion://jobs/{job_id}/status"

    async def go() -> None:
        async with Client(mcp) as c:
            async with c.listen(resource_subscriptions=[uri]):
                assert watchers[-1].watched() == {uri}
            await anyio.sleep(0.2)
            assert watchers[-1].watched() == set()  # the stream ended: nothing is watched any more
        async with Client(mcp, mode="legacy") as c:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                await c.subscribe_resource(uri)
            assert watchers[-1].watched() == {uri}
        assert watchers[-1].watched() == set()  # the session ended without an unsubscribe
    anyio.run(go)
