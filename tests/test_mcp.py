"""The MCP server through real clients: the SDK in-memory client in both protocol eras, the server over
stdio as a subprocess, and the MCP Inspector CLI (when npm installed it, as .ci/run does)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from tao_bevfusion.server import mcp

from tests.conftest import REPO, SERVE_ARGS, copy_sample

TOOLS = ["route_request", "resolve_automl_policy", "check_dataset", "build_spec", "resolve_parent_checkpoint",
         "run_action", "get_job", "get_job_logs", "list_jobs", "cancel_job"]
INSPECTOR = REPO / ".ci" / "node" / "node_modules" / ".bin" / "mcp-inspector"


@pytest.fixture(params=["auto", "legacy"])
def era(request) -> str:
    return request.param


@pytest.fixture
def local_kitti(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A KITTI copy, with the local backend running the TAO stand-in as `bevfusion`."""
    standin = REPO / "tests" / "standin" / "bevfusion_standin.py"
    monkeypatch.setenv("TAO_BEVFUSION_LOCAL_CLI", json.dumps([sys.executable, str(standin)]))
    return copy_sample(workspace / "kitti")


def run(coro_fn, *args):
    return anyio.run(coro_fn, *args)


def test_tools_annotations_and_schemas(era: str):
    async def go():
        async with Client(mcp, mode=era) as c:
            listed = (await c.list_tools()).tools
            assert [t.name for t in listed] == TOOLS
            by = {t.name: t for t in listed}
            for t in listed:
                assert t.description and t.output_schema and t.input_schema["type"] == "object"
                assert t.annotations is not None
            assert by["get_job"].annotations.read_only_hint and not by["run_action"].annotations.read_only_hint
            assert by["cancel_job"].annotations.destructive_hint and by["cancel_job"].annotations.idempotent_hint
            assert by["run_action"].annotations.open_world_hint
            props = by["run_action"].input_schema["properties"]
            assert props["wait_seconds"]["maximum"] == 45 and "gpus" in props and "spec_path" in props
            assert set(by["build_spec"].input_schema["properties"]) >= {
                "action", "data_root", "results_dir", "overrides", "parent_job_id", "checkpoint",
                "pretrained_checkpoint", "output_path"}
            resources = await c.list_resource_templates()
            uris = {r.uri_template for r in resources.resource_templates}
            assert "tao-bevfusion://jobs/{job_id}/log" in uris and "tao-bevfusion://schemas/{action}" in uris
            prompt = await c.get_prompt("bevfusion_pipeline", {"data_root": "/data/kitti"})
            assert "dataset_convert" in prompt.messages[0].content.text
    run(go)


def test_calls_return_short_text_and_structured_content(era: str, workspace: Path):
    root = copy_sample(workspace / "kitti")

    async def go():
        async with Client(mcp, mode=era) as c:
            r = await c.call_tool("route_request", {"request": "train BEVFusion, no HPO"})
            assert not r.is_error and r.structured_content["action"] == "train"
            assert r.structured_content["automl_policy"] == "off" and not r.content[0].text.startswith("{")
            r = await c.call_tool("check_dataset", {"data_root": str(root), "action": "dataset_convert"})
            assert r.structured_content["ok"] is True and r.content[0].text.startswith("ready")
            r = await c.call_tool("build_spec", {"action": "train", "data_root": str(root),
                                                 "overrides": {"num_epochs": 3}, "encryption_key": "k3y-secret"})
            assert not r.is_error and Path(r.structured_content["spec_path"]).is_file()
            assert "k3y-secret" not in json.dumps(r.structured_content) + r.content[0].text
            assert len(r.content[0].text) < 8000
            r = await c.call_tool("run_action", {"action": "train", "data_root": str(root)})
            assert r.structured_content["state"] == "review" and "automl_policy='off'" in r.content[0].text
            assert r.structured_content["job_id"] is None and r.structured_content["review"]["search_space"]
            r = await c.call_tool("run_action", {"action": "dataset_convert", "data_root": str(root),
                                                 "dry_run": True, "gpus": []})
            assert r.structured_content["job_id"] is None and r.structured_content["plan"]["command"][1] == "convert"
            r = await c.call_tool("list_jobs", {})
            assert r.structured_content["jobs"] == [] and r.structured_content["comparison"] is None
            skill = await c.read_resource("tao-bevfusion://skill")
            assert "tao-train-bevfusion" in skill.contents[0].text
    run(go)


@pytest.mark.parametrize("name,args,needle", [
    ("get_job", {"job_id": "nope"}, "not a job id"),
    ("get_job", {"job_id": "j0123456789abcdef"}, "list_jobs"),
    ("cancel_job", {"job_id": "j0123456789abcdef"}, "list_jobs"),
    ("resolve_automl_policy", {"action": "train", "automl_policy": "auto"}, "'on' or 'off'"),
    ("run_action", {"action": "train", "wait_seconds": 99}, "less than or equal to 45"),
    ("build_spec", {"action": "train", "data_root": "relative"}, "absolute"),
    ("build_spec", {"action": "train", "data_root": "/x" * 3000}, "at most 4096"),
    ("check_dataset", {"data_root": "/etc", "action": "nope"}, "action"),
    ("no_such_tool", {}, "no_such_tool"),
    ("route_request", {"request": "train bevfusion", "bogus": 1}, "bogus"),
    ("run_action", {"action": "evaluate", "spec_path": "/etc/passwd"}, "outside the allowed roots"),
])
def test_bad_calls_are_tool_errors_not_crashes(era: str, workspace: Path, name, args, needle):
    async def go():
        async with Client(mcp, mode=era) as c:
            r = await c.call_tool(name, args)
            assert r.is_error and needle in r.content[0].text
            assert (await c.call_tool("list_jobs", {})).is_error is False  # the server is still fine
    run(go)


def test_client_disconnect_mid_wait_leaves_the_job_running(local_kitti: Path):
    root = local_kitti

    async def go():
        async with Client(mcp) as c:
            args = {"action": "dataset_convert", "data_root": str(root), "backend": "local",
                    "env": {"FAKE_TAO_ITER_SECONDS": "1"}, "wait_seconds": 40}
            with anyio.move_on_after(1.5):  # the client gives up long before the wait ends
                await c.call_tool("run_action", args)
        async with Client(mcp) as c:
            jobs = (await c.call_tool("list_jobs", {})).structured_content["jobs"]
            assert len(jobs) == 1 and jobs[0]["action"] == "dataset_convert"
            for _ in range(60):
                job = (await c.call_tool("get_job", {"job_id": jobs[0]["job_id"]})).structured_content
                if job["state"] != "running":
                    break
                await anyio.sleep(0.5)
            assert job["state"] == "succeeded"
    run(go)


def test_training_curve_is_offered_as_an_image(era: str, workspace: Path):
    from tao_bevfusion.core.settings import Settings
    from tao_bevfusion.jobs.store import JobStore

    results = workspace / "run"
    (results / "train").mkdir(parents=True)
    lines = [{"mode": "train", "cur_iter": i, "loss": 5.0 / i, "status": "RUNNING"} for i in range(1, 9)]
    lines += [{"mode": "val", "epoch": e, "AP11": 10.0 * e, "AP40": 9.0 * e, "status": "RUNNING"} for e in (1, 2)]
    (results / "train" / "status.json").write_text("".join(json.dumps(x) + "\n" for x in lines))
    store = JobStore(Settings.from_env().home)
    job = store.create(action="train", backend="local", spec_path="/s.yaml", spec_sha256="x",
                       results_dir=str(results), data_root=str(workspace), meta={"num_epochs": 2})
    store.update(job.id, state="succeeded", verdict={"outcome": "succeeded", "reason": "test record"})

    async def go():
        async with Client(mcp, mode=era) as c:
            r = await c.call_tool("get_job", {"job_id": job.id, "include_curve": True})
            image = next(b for b in r.content if b.type == "image")
            assert image.mime_type == "image/png" and len(image.data) > 1000
            res = await c.read_resource(f"tao-bevfusion://jobs/{job.id}/curve.png")
            assert res.contents[0].blob
    run(go)


def test_streamable_http_transport(workspace: Path):
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k.startswith(("TAO_BEVFUSION_", "PATH", "HOME"))}
    proc = subprocess.Popen([sys.executable, *SERVE_ARGS, "--transport", "http", "--port", str(port)],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        async def go():
            token = (workspace / "home" / "http.token").read_text().strip()  # generated at start (0600)
            http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"})
            async with Client(streamable_http_client(f"http://127.0.0.1:{port}/mcp", http_client=http)) as c:
                assert [t.name for t in (await c.list_tools()).tools] == TOOLS

        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        run(go)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_run_action_waits_with_progress_notifications(era: str, local_kitti: Path):
    root = local_kitti
    seen: list[tuple[float, str]] = []

    async def progress(value: float, total: float | None, message: str | None) -> None:
        seen.append((value, message or ""))

    async def go():
        async with Client(mcp, mode=era) as c:
            common = {"data_root": str(root), "backend": "local"}
            r = await c.call_tool("run_action", {"action": "dataset_convert", **common, "wait_seconds": 20})
            assert r.structured_content["summary"]["state"] == "succeeded"
            r = await c.call_tool("run_action", {"action": "train", **common, "automl_policy": "off",
                                                 "overrides": {"num_epochs": 2, "batch_size": 1},
                                                 "env": {"FAKE_TAO_ITER_SECONDS": "0.4"}, "wait_seconds": 30},
                                  progress_callback=progress)
            assert r.structured_content["summary"]["state"] == "succeeded"
    run(go)
    values = [v for v, _ in seen]
    assert len(values) >= 2 and values == sorted(set(values))  # strictly increasing, as MCP requires
    assert any("iter" in m or "epoch" in m for _, m in seen) and "succeeded" in seen[-1][1]


def test_job_resources_log_status_and_masked_spec(local_kitti: Path):
    root = local_kitti

    async def go():
        async with Client(mcp) as c:
            common = {"data_root": str(root), "backend": "local"}
            await c.call_tool("run_action", {"action": "dataset_convert", **common, "wait_seconds": 20})
            r = await c.call_tool("run_action", {"action": "train", **common, "automl_policy": "off",
                                                 "encryption_key": "tlt-s3cret", "wait_seconds": 30,
                                                 "overrides": {"num_epochs": 1, "batch_size": 1}})
            job_id = r.structured_content["job_id"]
            assert r.structured_content["summary"]["state"] == "succeeded"
            assert "tlt-s3cret" not in json.dumps(r.structured_content)
            base = f"tao-bevfusion://jobs/{job_id}"
            log = (await c.read_resource(f"{base}/log")).contents[0].text
            status = (await c.read_resource(f"{base}/status")).contents[0].text
            spec = (await c.read_resource(f"{base}/spec")).contents[0].text
            assert "Execution status: PASS" in log and "Train finished successfully." in status
            assert "encryption_key: '***'" in spec and "tlt-s3cret" not in spec + log
            assert "kitti_person_infos_train.pkl" in spec
            from mcp.shared.exceptions import MCPError

            with pytest.raises(MCPError, match="list_jobs"):  # ResourceNotFoundError, -32602
                await c.read_resource("tao-bevfusion://jobs/j0123456789abcdef/log")
    run(go)


def test_stdio_subprocess_has_clean_stdout(workspace: Path):
    env = {k: v for k, v in os.environ.items() if k.startswith(("TAO_BEVFUSION_", "PATH", "HOME"))}
    params = StdioServerParameters(command=sys.executable, args=SERVE_ARGS, env=env, cwd=str(REPO))

    async def go():
        async with Client(params) as c:
            assert [t.name for t in (await c.list_tools()).tools] == TOOLS
            r = await c.call_tool("route_request", {"request": "evaluate my BEVFusion checkpoint"})
            assert r.structured_content["action"] == "evaluate"
    run(go)


def _inspector(workspace: Path, *method: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TAO_BEVFUSION_HOME": str(workspace / "home"), "TAO_BEVFUSION_ROOTS": str(workspace)}
    cmd = [str(INSPECTOR), "--cli", "-e", f"TAO_BEVFUSION_HOME={env['TAO_BEVFUSION_HOME']}",
           "-e", f"TAO_BEVFUSION_ROOTS={env['TAO_BEVFUSION_ROOTS']}", *method,
           "--", sys.executable, "-m", "tao_bevfusion.cli", "serve"]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not INSPECTOR.exists() and not os.environ.get("CI"), reason="Inspector installed by .ci/run")
def test_inspector_cli_lists_strictly_and_calls(workspace: Path):
    assert shutil.which("node"), "node is needed for the MCP Inspector"
    listed = _inspector(workspace, "--method", "tools/list", "--strict", "--format", "json")
    assert listed.returncode == 0, listed.stderr[-2000:]
    names = [t["name"] for t in json.loads(listed.stdout)["result"]["tools"]]
    assert names == TOOLS
    root = copy_sample(workspace / "kitti")
    call = _inspector(workspace, "--method", "tools/call", "--tool-name", "check_dataset", "--tool-args-json",
                      json.dumps({"data_root": str(root), "action": "dataset_convert"}), "--format", "json")
    assert call.returncode == 0, call.stderr[-2000:]
    assert json.loads(call.stdout)["result"]["structuredContent"]["ok"] is True
    bad = _inspector(workspace, "--method", "tools/call", "--tool-name", "get_job", "--tool-args-json",
                     json.dumps({"job_id": "j0123456789abcdef"}), "--format", "json")
    assert bad.returncode == 5 and "list_jobs" in bad.stdout + bad.stderr


def test_every_tool_input_and_output_field_is_described():
    from tao_bevfusion.api import TOOLS

    for t in TOOLS:
        for model in (t.input, t.output):
            undocumented = [n for n, f in model.model_fields.items() if not f.description]
            assert not undocumented, f"{t.name}: {model.__name__} {undocumented}"
