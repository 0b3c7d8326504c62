"""The dashboard MCP App in real headless Chromium: a small host page (tests/apps_host.html) speaks the
Apps bridge, loads the ui:// page from the server, feeds it real results of the stand-in (a run, a
study with pruned trials, an inference, a failed run, a comparison) and forwards the page's tool calls
to the server through the real MCP client. Clients without Apps get the same result as before."""

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client import advertise
from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID
from tao_bevfusion.present.dashboard import PAGE_URI, VIEW_KEY
from tao_bevfusion.server import mcp

from tests.conftest import REPO, copy_sample

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
HOST = REPO / "tests" / "apps_host.html"
SHOTS = REPO / "examples" if os.environ.get("UPDATE_SCREENSHOTS") else None
XSS = "CUDA out of memory. <script>window.top.__pwned=1</script><img src=x onerror=window.top.__pwned=2>"
LR = "train.optimizer.lr"


def apps_client() -> Client:
    return Client(mcp, extensions=[advertise(EXTENSION_ID, {"mimeTypes": [APP_MIME_TYPE]})])


def wire(result: Any) -> dict[str, Any]:
    return result.model_dump(by_alias=True, mode="json", exclude_none=True)


@pytest.fixture
def local_kitti(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    standin = REPO / "tests" / "standin" / "bevfusion_standin.py"
    monkeypatch.setenv("TAO_BEVFUSION_LOCAL_CLI", json.dumps([sys.executable, str(standin)]))
    monkeypatch.setenv("TAO_BEVFUSION_AUTOML_TICK", "0.3")
    return copy_sample(workspace / "kitti")


async def until_done(c: Client, job_id: str, seconds: float = 150) -> dict[str, Any]:
    with anyio.fail_after(seconds):
        while True:
            job = (await c.call_tool("get_job", {"job_id": job_id})).structured_content
            if job["state"] not in ("pending", "running"):
                return job
            await anyio.sleep(0.5)


async def make_jobs(c: Client, root: Path) -> dict[str, str]:
    """Real stand-in jobs: converted data, a 3-epoch train, an inference, a failed run, an ASHA study."""
    common = {"data_root": str(root), "backend": "local"}
    r = await c.call_tool("run_action", {"action": "dataset_convert", **common, "wait_seconds": 30})
    assert r.structured_content["summary"]["state"] == "succeeded", r.content[0].text
    plain = {"action": "train", **common, "automl_policy": "off", "overrides": {"num_epochs": 3, "batch_size": 1}}
    run = (await c.call_tool("run_action", {**plain, "env": {"FAKE_TAO_ITER_SECONDS": "0.05"}}))
    failed = await c.call_tool("run_action", {**plain, "env": {"FAKE_TAO_FAULT": "fail_at_iter",
                                                               "FAKE_TAO_ERROR_TEXT": XSS}})
    automl = {"automl_algorithm": "asha", "automl_max_epochs": 4, "automl_max_concurrent": 1,
              "automl_max_recommendations": 3, "automl_hyperparameters": [LR],
              "custom_param_ranges": {LR: {"min": 5e-5, "max": 7e-5}}}
    study = await c.call_tool("run_action", {"action": "train", **common, "gpus": [], "confirm": True,
                                             "overrides": {"batch_size": 1}, "automl_settings": automl,
                                             "env": {"FAKE_TAO_ITER_SECONDS": "0.3"}})
    ids = {"run": run.structured_content["job_id"], "failed": failed.structured_content["job_id"],
           "study": study.structured_content["job_id"]}
    assert (await until_done(c, ids["run"]))["state"] == "succeeded"
    assert (await until_done(c, ids["failed"]))["state"] == "failed"
    r = await c.call_tool("run_action", {"action": "inference", **common, "parent_job_id": ids["run"]})
    ids["inference"] = r.structured_content["job_id"]
    assert (await until_done(c, ids["inference"]))["state"] == "succeeded"
    assert (await until_done(c, ids["study"], 240))["state"] == "succeeded"
    return ids


class Host:
    """The test host page in Chromium, its iframe the dashboard."""

    def __init__(self, page: Any, client: Client, html: str) -> None:
        self.page, self.client, self.html = page, client, html

    async def forward(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if method == "tools/call":
            return wire(await self.client.call_tool(params["name"], params.get("arguments") or {}))
        return wire(await self.client.read_resource(params["uri"]))

    async def show(self, tool: str, args: dict[str, Any]) -> Any:
        result = wire(await self.client.call_tool(tool, args))
        await self.page.evaluate("([h, i, r]) => hostShow(h, i, r)", [self.html, args, result])
        view = self.page.frame_locator("#view")
        await view.locator("body[data-rendered]").wait_for()
        return view

    async def calls(self) -> list[dict[str, Any]]:
        return await self.page.evaluate("window.__calls")

    async def shot(self, name: str) -> None:
        if SHOTS is not None:
            app = self.page.frame_locator("#view").locator("#app")
            await app.screenshot(path=str(SHOTS / f"dashboard_{name}.png"))


async def check_run(host: Host, ids: dict[str, str]) -> None:
    view = await host.show("get_job", {"job_id": ids["run"]})
    assert await view.locator("#state").inner_text() == "succeeded"
    assert "3 / 3" in await view.locator("#epoch").inner_text()
    assert "succeeded" in await view.locator("#verdict").inner_text()
    points = view.locator("svg[data-chart='validation AP'] circle.pt")
    assert await points.count() == 6  # AP11 and AP40 at each of the 3 validated epochs
    assert await view.locator("svg[data-chart='train loss'] polyline").count() == 1
    await host.shot("run")
    await view.locator("#btn-refresh").click()
    await view.locator("#state").wait_for()
    assert (await host.calls())[-1] == {"method": "tools/call",
                                        "params": {"name": "get_job", "arguments": {"job_id": ids["run"]}}}
    assert await view.locator("#btn-cancel").count() == 0  # a finished run offers no cancel


async def check_failed(host: Host, ids: dict[str, str]) -> None:
    view = await host.show("get_job", {"job_id": ids["failed"]})
    assert await view.locator("#state").inner_text() == "failed"
    assert "failed" in await view.locator("#verdict").inner_text()
    evidence = await view.locator("#error-list pre.evidence").first.inner_text()
    assert "<script>window.top.__pwned=1</script>" in evidence  # the log line shows as text
    assert await view.locator("#error-list script, #error-list img").count() == 0
    assert await host.page.evaluate("window.__pwned") is None
    await host.shot("failed")


async def check_study(host: Host, ids: dict[str, str]) -> None:
    view = await host.show("get_job", {"job_id": ids["study"]})
    rows = view.locator("#trials tr[data-trial]")
    assert await rows.count() == 3
    assert await view.locator("#trials tr.best").count() == 1
    assert "★ 0" in await view.locator("#trials tr.best").inner_text()
    assert await view.locator("#trials tr.pruned").count() == 2
    assert "pruned" in await view.locator("#trials tr.pruned").first.inner_text()
    chart = view.locator("svg[data-chart='AP11 vs lr']")
    assert await chart.locator("circle.pt").count() == 3 and await chart.locator("circle.best").count() == 1
    await host.shot("study")
    await view.locator("#btn-compare").click()
    await view.locator("#comparison").wait_for()
    call = (await host.calls())[-1]
    assert call["params"]["name"] == "list_jobs" and len(call["params"]["arguments"]["compare"]) >= 2
    assert await view.locator("#comparison tr[data-job]").count() == len(call["params"]["arguments"]["compare"])
    await host.shot("compare")
    view = await host.show("get_job", {"job_id": ids["study"]})
    await view.locator("#btn-evaluate").click()
    await view.locator("h1:has-text('evaluate')").wait_for()
    call = (await host.calls())[-1]["params"]
    assert call == {"name": "run_action", "arguments": {
        "action": "evaluate", "data_root": call["arguments"]["data_root"], "parent_job_id": ids["study"],
        "backend": "local"}}
    assert await view.locator("#tool-error").count() == 0


async def check_inference(host: Host, ids: dict[str, str]) -> None:
    view = await host.show("get_job", {"job_id": ids["inference"]})
    assert await view.locator("#detections").count() == 1
    bev = view.locator("img[data-kind='bev']").first
    await view.locator("img[data-kind='bev'][src^='data:image/png;base64,']").first.wait_for()
    await view.locator("img[data-kind='camera'][src^='data:image/png;base64,']").first.wait_for()
    assert await bev.evaluate("img => img.naturalWidth") > 100
    reads = [c["params"]["uri"] for c in await host.calls() if c["method"] == "resources/read"]
    assert any(u.endswith(".png") and "/bev/" in u for u in reads)
    await host.shot("inference")


def test_dashboard_draws_real_results_and_its_buttons_make_the_calls(local_kitti: Path):
    from playwright.async_api import async_playwright

    async def go() -> None:
        async with apps_client() as c, async_playwright() as pw:
            ids = await make_jobs(c, local_kitti)
            page_res = (await c.read_resource(PAGE_URI)).contents[0]
            assert page_res.mime_type == APP_MIME_TYPE
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = await browser.new_page(viewport={"width": 1020, "height": 1420})
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            host = Host(page, c, page_res.text)
            await page.expose_function("mcpForward", host.forward)
            await page.goto(HOST.as_uri())
            for check in (check_run, check_failed, check_study, check_inference):
                await check(host, ids)
            assert requests == [HOST.as_uri()]  # the page itself fetched nothing
            assert "ui/notifications/initialized" in await page.evaluate("window.__log")
            await browser.close()
    anyio.run(go)


def test_clients_without_apps_get_the_same_result_and_apps_clients_the_page(local_kitti: Path):
    async def go() -> None:
        async with apps_client() as with_apps, Client(mcp) as plain:
            tools = {t.name: t for t in (await plain.list_tools()).tools}
            assert tools["get_job"].meta["ui"]["resourceUri"] == PAGE_URI
            assert tools["list_jobs"].meta["ui"]["resourceUri"] == PAGE_URI
            assert tools["run_action"].meta is None or "ui" not in tools["run_action"].meta
            r = await plain.call_tool("run_action", {"action": "dataset_convert", "data_root": str(local_kitti),
                                                     "backend": "local", "wait_seconds": 30})
            job_id = r.structured_content["job_id"]
            a = await plain.call_tool("get_job", {"job_id": job_id})
            b = await with_apps.call_tool("get_job", {"job_id": job_id})
            assert VIEW_KEY not in (a.meta or {}) and VIEW_KEY in (b.meta or {})
            assert a.structured_content == b.structured_content and a.content == b.content
            actions = b.meta[VIEW_KEY]["actions"]
            assert actions["refresh"] == {"tool": "get_job", "arguments": {"job_id": job_id}}
            page = (await plain.read_resource(PAGE_URI)).contents[0]
            assert page.mime_type == APP_MIME_TYPE and len(page.text) < 40_000
            assert "fetch(" not in page.text and "XMLHttpRequest" not in page.text and "innerHTML" not in page.text
    anyio.run(go)
