"""Live features, measured: the dashboard page's size and its time to first render in headless Chromium
for a 40-trial study (through tests/apps_host.html, the Apps bridge handshake included); the latency from
a job's end (the stand-in's last status.json write) to the subscribed client's notifications/resources/updated;
the CPU of a real HTTP server process with 50 subscriptions open and nothing changing.

    python3 benchmarks/live_bench.py [--quick] [--out FILE]
"""

import argparse
import json
import logging
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
STANDIN = REPO / "tests" / "standin" / "bevfusion_standin.py"
LR, WD = "train.optimizer.lr", "train.optimizer.weight_decay"


def study_result(trials: int) -> dict[str, Any]:
    """A get_job(study) result of `trials` trials, as an Apps host hands it to the page."""
    from tao_bevfusion.present.dashboard import VIEW_KEY
    from tao_bevfusion.present.summary import JobSummary, Progress
    from tao_bevfusion.studies.models import StudyBest, StudyProgress, StudyStatus, TrialRow

    rng = random.Random(0)
    rows = [TrialRow(number=i, job_id=f"j{i:016x}", state=rng.choice(["complete", "pruned", "complete"]),
                     params={LR: 10 ** rng.uniform(-4.3, -3), WD: 10 ** rng.uniform(-3, -1)},
                     value=round(rng.uniform(10, 40), 2), epoch=rng.randint(2, 10)) for i in range(trials)]
    best = max(rows, key=lambda r: r.value or 0)
    st = StudyStatus(algorithm="asha", progress=StudyProgress(completed=trials, total=trials), trials=rows,
                     best=StudyBest(trial=best.number, job_id=best.job_id, value=best.value or 0, epoch=best.epoch,
                                    params=best.params, checkpoint="/runs/epoch_4.pth"), driver={"alive": False})
    s = JobSummary(job_id="j00000000000000ff", kind="study", action="train", state="succeeded", backend="docker",
                   progress=Progress(), metrics={}, errors=[], artifacts={}, next_steps=[], results_dir="/runs",
                   log_resource="", digest="study", study=st)
    view = {"view": "job", "actions": {"refresh": {"tool": "get_job", "arguments": {"job_id": s.job_id}}}}
    return {"content": [{"type": "text", "text": s.digest}], "structuredContent": s.model_dump(mode="json"),
            "_meta": {VIEW_KEY: view}}


async def page_render(repeat: int) -> dict[str, Any]:
    from playwright.async_api import async_playwright
    from tao_bevfusion.present.dashboard import page_html

    html, result = page_html(), study_result(40)
    times = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = await browser.new_page()
        await page.goto((REPO / "tests" / "apps_host.html").as_uri())
        for _ in range(repeat):
            start = time.perf_counter()
            await page.evaluate("([h, r]) => hostShow(h, {}, r)", [html, result])
            view = page.frame_locator("#view")
            await view.locator("body[data-rendered] #trials").wait_for()
            times.append(time.perf_counter() - start)
            assert await view.locator("#trials tr[data-trial]").count() == 40
            await page.evaluate("document.getElementById('view').srcdoc = ''")
        await browser.close()
    return {"page_bytes": len(html.encode()), "trials": 40, "first_render_s_median": round(statistics.median(times), 3),
            "first_render_s_max": round(max(times), 3), "repeat": repeat}


def _env(home: Path) -> None:
    os.environ.update({"TAO_BEVFUSION_HOME": str(home / "home"), "TAO_BEVFUSION_ROOTS": str(home),
                       "TAO_BEVFUSION_LOCAL_CLI": json.dumps([sys.executable, str(STANDIN)])})


async def notification_latency(root: Path, jobs: int) -> dict[str, Any]:
    from mcp import Client
    from tao_bevfusion.core.layout import status_path
    from tao_bevfusion.jobs.context import app_context
    from tao_bevfusion.jobs.launch import RunActionInput
    from tao_bevfusion.server import mcp
    from tao_bevfusion.service.run import run_action

    latencies = []
    async with Client(mcp) as c:
        for _ in range(jobs):
            r = run_action(RunActionInput(action="train", data_root=str(root), backend="local", automl_policy="off",
                                          overrides={"num_epochs": 2, "batch_size": 1},
                                          env={"FAKE_TAO_ITER_SECONDS": "0.3"}))
            uri = f"tao-bevfusion://jobs/{r.job_id}/status"
            async with c.listen(resource_subscriptions=[uri]) as sub:
                with anyio.fail_after(120):
                    async for _event in sub:
                        heard = time.time()
                        job = app_context().store.get(str(r.job_id))
                        if job.terminal:
                            break
            status = status_path("train", Path(job.results_dir), Path(job.data_root))
            latencies.append(heard - status.stat().st_mtime)
    return {"end_to_client_s": [round(x, 2) for x in latencies], "median_s": round(statistics.median(latencies), 2),
            "watch_tick_s": float(os.environ.get("TAO_BEVFUSION_WATCH_SECONDS", "2")),
            "coalescing_gap_s": float(os.environ.get("TAO_BEVFUSION_UPDATE_GAP_SECONDS", "3"))}


def _finished_jobs(count: int) -> list[str]:
    from tao_bevfusion.jobs.context import app_context

    store, ids = app_context().store, []
    for i in range(count):
        job = store.create(action="train", backend="local", spec_path="/dev/null", spec_sha256="0" * 64,
                           results_dir=f"/tmp/none-{i}", data_root="/tmp/none")
        store.update(job.id, state="succeeded", verdict={"outcome": "succeeded", "reason": "benchmark record"})
        ids.append(job.id)
    return ids


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def idle_cpu(subscriptions: int, window: float) -> dict[str, Any]:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    ids = _finished_jobs(subscriptions)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "tao_bevfusion.cli", "serve", "--transport", "http",
                               "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await _wait_port(port)
        token = (Path(os.environ["TAO_BEVFUSION_HOME"]) / "http.token").read_text().strip()  # generated at start
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"})
        transport = streamable_http_client(f"http://127.0.0.1:{port}/mcp", http_client=http)
        async with Client(transport) as c, AsyncExitStack() as stack:
            await anyio.sleep(1.0)
            before = _cpu(server.pid)
            await anyio.sleep(window)
            alone = (_cpu(server.pid) - before) / window
            for job_id in ids:
                await stack.enter_async_context(c.listen(resource_subscriptions=[f"tao-bevfusion://jobs/{job_id}/status"]))
            await anyio.sleep(3.0)  # the first look at each job
            before = _cpu(server.pid)
            await anyio.sleep(window)
            held = (_cpu(server.pid) - before) / window
    finally:
        server.terminate()
        server.wait(10)
    return {"subscriptions": subscriptions, "window_s": window, "cpu_percent_no_subscriptions": round(alone * 100, 2),
            "cpu_percent_with_subscriptions": round(held * 100, 2)}


async def _wait_port(port: int) -> None:
    with anyio.fail_after(30):
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return
            except OSError:
                await anyio.sleep(0.2)


def _converted(tmp: Path) -> Path:
    from tao_bevfusion.jobs.context import app_context
    from tao_bevfusion.jobs.launch import RunActionInput
    from tao_bevfusion.jobs.wait import wait_sync
    from tao_bevfusion.service.run import run_action

    from tests.conftest import copy_sample

    root = copy_sample(tmp / "kitti")
    job = run_action(RunActionInput(action="dataset_convert", data_root=str(root), backend="local"))
    assert wait_sync(str(job.job_id), 60, app_context()).state == "succeeded"
    return root


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repeats and a shorter CPU window")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    repeat, jobs, window = (3, 1, 5.0) if args.quick else (10, 3, 20.0)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        _env(Path(tmp))
        root = _converted(Path(tmp))
        result = {"page": anyio.run(page_render, repeat), "notification": anyio.run(notification_latency, root, jobs),
                  "idle_cpu": anyio.run(idle_cpu, 50, window), "quick": args.quick}
    text = json.dumps(result, indent=2)
    print(text)
    out = args.out or REPO / "benchmarks" / f"live_results{'.quick' if args.quick else ''}.json"
    out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
