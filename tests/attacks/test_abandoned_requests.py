"""Issue 17 item 6: picture work whose caller went away stops. A real HTTP server (the transport the attack
used) renders pictures of frames with 8,000 boxes; the client gives up after a moment (notifications/cancelled
from the SDK client). The server's CPU time must stop growing within a second or so, instead of rendering
every frame for nobody (old: 100 % CPU until the last picture was drawn). A second call on the same server is
still answered, so the server did not stop with the work."""

import os
import shutil
import subprocess
import time
from pathlib import Path

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.attacks.test_pictures_and_predictions import _many_boxes
from tests.conftest import copy_sample
from tests.test_http_auth import _free_port, _serve, _stop, _wait_port
from tests.test_see_results import _inference_job

FRAMES = [f"{i:06d}" for i in range(100, 136)]  # copies of frame 000000, so a contact sheet has real work


def _many_frames(root: Path) -> None:
    split = root / "training"
    for frame in FRAMES:
        for sub, ext in (("velodyne", "bin"), ("image_2", "png"), ("calib", "txt"), ("label_2", "txt")):
            shutil.copyfile(split / sub / f"000000.{ext}", split / sub / f"{frame}.{ext}")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _busy_after_giving_up(
    port: int, token: str, pid: int, give_up: float, ask: object, warm: object = None
) -> tuple[float, str]:
    """After `warm(client)`, start `ask(client)` and give up after `give_up` s; then measure the server's CPU
    seconds over the 2 s that start 1 s later (the step under way may finish). Returns them and a later
    call's answer."""
    url = f"http://127.0.0.1:{port}/mcp"

    async def go() -> tuple[float, str]:
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=120)
        async with Client(streamable_http_client(url, http_client=http)) as c:
            if warm is not None:
                await warm(c)  # type: ignore[operator]
            with anyio.move_on_after(give_up) as scope:
                await ask(c)  # type: ignore[operator]
            assert scope.cancelled_caught, "the work ended before the client gave up: make it longer"
            await anyio.sleep(1.0)
            before = _cpu_seconds(pid)
            await anyio.sleep(2.0)
            busy = _cpu_seconds(pid) - before
            later = await c.call_tool("list_jobs", {})
            return busy, later.content[0].text

    return anyio.run(go)


def _server_with_job(workspace: Path) -> tuple[str, int, str, subprocess.Popen]:
    root = copy_sample(workspace / "kitti")
    _many_frames(root)
    boxes = _many_boxes(8000)
    jid = _inference_job(workspace, root, {f: boxes for f in ["000000", "000008", *FRAMES]})
    port = _free_port()
    proc = _serve(port)
    _wait_port(port, proc)
    token = (workspace / "home" / "http.token").read_text().strip()
    return jid, port, token, proc


def test_an_abandoned_contact_sheet_stops_rendering(workspace: Path):
    jid, port, token, proc = _server_with_job(workspace)
    try:
        async def sheet(c: Client) -> None:
            await c.read_resource(f"tao-bevfusion://jobs/{jid}/sheet.png")

        busy, later = _busy_after_giving_up(port, token, proc.pid, 0.8, sheet)
    finally:
        log = _stop(proc)
    assert busy < 0.4, f"the server kept working {busy:.2f} CPU s of 2 s after the client left"
    assert jid in later
    assert "the caller went away" in log, log[-2000:]


def test_abandoned_frame_pictures_stop_between_frames(workspace: Path):
    jid, port, token, proc = _server_with_job(workspace)
    started = time.monotonic()
    try:
        async def summary(c: Client) -> None:  # the detections summary is cached: the next call only draws
            await c.call_tool("get_job", {"job_id": jid})

        async def frames(c: Client) -> None:
            await c.call_tool("get_job", {"job_id": jid, "frames": FRAMES[:4]})

        busy, later = _busy_after_giving_up(port, token, proc.pid, 1.0, frames, warm=summary)
    finally:
        log = _stop(proc)
    assert busy < 0.4, f"the server kept working {busy:.2f} CPU s of 2 s after the client left"
    assert jid in later and time.monotonic() - started < 60
    assert "the caller went away" in log, log[-2000:]


def test_a_stopped_picture_leaves_no_open_figure():
    """The plain functions: outside a request nothing stops; once the request's event is set, the encode is
    skipped with CallerGone and the figure is closed (a long-running server must not collect open figures)."""
    import threading

    import pytest
    from tao_bevfusion.core.caller import CallerGone, check_caller, watched
    from tao_bevfusion.present.viz.figure import png, pyplot

    check_caller()  # no request: never stops
    plt = pyplot()
    open_before = len(plt.get_fignums())
    gone = threading.Event()
    assert watched(lambda: png(plt.figure()), gone).startswith(b"\x89PNG")
    gone.set()
    with pytest.raises(CallerGone):
        watched(lambda: png(plt.figure()), gone)
    assert len(plt.get_fignums()) == open_before
