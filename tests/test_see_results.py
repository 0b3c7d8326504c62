"""Issue 10 through the MCP client, as an agent makes the calls: detections and their pictures, the AP
table with the checkpoint evaluated, on the local backend running the TAO stand-in over the real sample."""

import base64
import io
import json
import sys
from pathlib import Path

import anyio
import numpy as np
import pytest
from mcp import Client
from PIL import Image
from tao_bevfusion.server import mcp

from tests.conftest import REPO, copy_sample


@pytest.fixture
def local_kitti(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    standin = REPO / "tests" / "standin" / "bevfusion_standin.py"
    monkeypatch.setenv("TAO_BEVFUSION_LOCAL_CLI", json.dumps([sys.executable, str(standin)]))
    return copy_sample(workspace / "kitti")


async def _until_done(c: Client, job_id: str) -> dict:
    for _ in range(120):
        job = (await c.call_tool("get_job", {"job_id": job_id})).structured_content
        if job["state"] not in ("pending", "running"):
            return job
        await anyio.sleep(0.5)
    raise AssertionError(f"{job_id} did not end")


async def pipeline(c: Client, root: Path) -> tuple[str, str, str]:
    common = {"data_root": str(root), "backend": "local"}
    r = await c.call_tool("run_action", {"action": "dataset_convert", **common, "wait_seconds": 20})
    assert r.structured_content["summary"]["state"] == "succeeded", r.content[0].text
    r = await c.call_tool("run_action", {"action": "train", **common, "automl_policy": "off",
                                         "overrides": {"num_epochs": 2, "batch_size": 1},
                                         "env": {"FAKE_TAO_ITER_SECONDS": "0.05"}})
    train = r.structured_content["job_id"]
    assert (await _until_done(c, train))["state"] == "succeeded"
    r = await c.call_tool("run_action", {"action": "evaluate", **common, "parent_job_id": train})
    ev = r.structured_content["job_id"]
    assert (await _until_done(c, ev))["state"] == "succeeded"
    r = await c.call_tool("run_action", {"action": "inference", **common, "parent_job_id": train})
    inf = r.structured_content["job_id"]
    assert (await _until_done(c, inf))["state"] == "succeeded"
    return train, ev, inf


def _png(block) -> Image.Image:
    assert block.type == "image" and block.mime_type == "image/png"
    return Image.open(io.BytesIO(base64.b64decode(block.data))).convert("RGB")


def test_inference_detections_pictures_and_evaluation_table(local_kitti: Path):
    async def go():
        async with Client(mcp) as c:
            _train, ev, inf = await pipeline(c, local_kitti)
            r = await c.call_tool("get_job", {"job_id": inf})
            det = r.structured_content["detections"]
            text = r.content[0].text
            assert det["frames"] >= 1 and det["boxes_above_threshold"] >= 1 and det["top"]
            assert "detections:" in text and "bev/" in text and "read predictions" not in text
            frame = det["top"][0]["frame"]
            r = await c.call_tool("get_job", {"job_id": inf, "frames": [frame]})
            images = [b for b in r.content if b.type == "image"]
            assert len(images) == 2
            bev = np.asarray(_png(images[0]))
            red = (bev[..., 0] > 200) & (bev[..., 1] < 60) & (bev[..., 2] < 60)
            assert red.sum() > 50  # the predicted box is drawn
            assert all(len(b.data) * 3 / 4 < 300_000 for b in images)
            res = await c.read_resource(f"tao-bevfusion://jobs/{inf}/bev/{frame}.png")
            assert res.contents[0].blob
            res = await c.read_resource(f"tao-bevfusion://jobs/{inf}/camera/{frame}.png")
            assert res.contents[0].blob
            r = await c.call_tool("get_job", {"job_id": inf, "include_pictures": True})
            assert _png(next(b for b in r.content if b.type == "image")).size[0] > 100
            r = await c.call_tool("get_job", {"job_id": inf, "frames": ["999999"]})
            assert r.is_error and "no predictions for frame '999999'" in r.content[0].text
            r = await c.call_tool("get_job", {"job_id": ev})
            evaluation = r.structured_content["evaluation"]
            assert evaluation["checkpoint"]["epoch"] == 2 and "best AP11" in evaluation["checkpoint"]["how"]
            kinds = {(row["ap"], row["kind"], row["overlap"]) for row in evaluation["ap_table"]}
            assert ("AP11", "3D", "strict") in kinds and ("AP40", "BEV", "loose") in kinds
            text = r.content[0].text
            assert "evaluated checkpoint:" in text and "AP40  BEV" in text and "moder." in text
            assert "max_epochs" not in json.dumps(r.structured_content["progress"]) or \
                r.structured_content["progress"]["max_epochs"] is None
            r = await c.call_tool("get_job", {"job_id": ev, "include_pictures": True})
            assert any(b.type == "image" for b in r.content)
    anyio.run(go)


def _inference_job(workspace: Path, root: Path, preds: dict[str, object] | None):
    from tao_bevfusion.core.settings import Settings
    from tao_bevfusion.jobs.store import JobStore

    results = workspace / "inf"
    if preds is not None:
        folder = results / "inference" / "preds"
        folder.mkdir(parents=True)
        for frame, data in preds.items():
            (folder / f"{frame}.json").write_text(data if isinstance(data, str) else json.dumps(data))
    store = JobStore(Settings.from_env().home)
    job = store.create(action="inference", backend="local", spec_path="/s.yaml", spec_sha256="x",
                       results_dir=str(results), data_root=str(root))
    store.update(job.id, state="succeeded", verdict={"outcome": "succeeded", "reason": "test record"})
    return job.id


def test_bad_predictions_are_named_never_drawn(workspace: Path):
    root = copy_sample(workspace / "kitti")
    good = {"labels_3d": [0], "scores_3d": [0.9], "bboxes_3d": [[8.7, -1.9, -1.6, 1.2, 0.5, 1.9, 0, 0, -1.6]]}
    jid = _inference_job(workspace, root, {"000000": good, "000008": {"boxes": [[1, 2]]}, "000009": "{nope"})

    async def go():
        async with Client(mcp) as c:
            r = await c.call_tool("get_job", {"job_id": jid})
            det = r.structured_content["detections"]
            assert det["frames"] == 1 and len(det["problems"]) == 2 and "unreadable: 2 files" in r.content[0].text
            r = await c.call_tool("get_job", {"job_id": jid, "frames": ["000008"]})
            assert r.is_error and "unexpected predictions" in r.content[0].text
            assert "000008.json" in r.content[0].text and not any(b.type == "image" for b in r.content)
            r = await c.call_tool("get_job", {"job_id": jid, "frames": ["../etc"]})
            assert r.is_error and "not a frame id" in r.content[0].text
            r = await c.call_tool("get_job", {"job_id": jid, "include_pictures": True})  # the sheet skips bad files
            assert not r.is_error and sum(b.type == "image" for b in r.content) == 1
            with pytest.raises(Exception, match="unexpected predictions"):
                await c.read_resource(f"tao-bevfusion://jobs/{jid}/bev/000008.png")
    anyio.run(go)


def test_inference_without_predictions_says_so(workspace: Path):
    root = copy_sample(workspace / "kitti")
    jid = _inference_job(workspace, root, None)

    async def go():
        async with Client(mcp) as c:
            r = await c.call_tool("get_job", {"job_id": jid})
            assert r.structured_content["detections"] is None
            assert "detections: none to show - no inference/preds folder" in r.content[0].text
            r = await c.call_tool("get_job", {"job_id": jid, "include_pictures": True})
            assert r.is_error and "no predictions" in r.content[0].text
    anyio.run(go)


def test_cli_bev_writes_the_pictures(workspace: Path, capsys: pytest.CaptureFixture[str]):
    from tao_bevfusion.cli import main

    root = copy_sample(workspace / "kitti")
    good = {"labels_3d": [0], "scores_3d": [0.9], "bboxes_3d": [[8.7, -1.9, -1.6, 1.2, 0.5, 1.9, 0, 0, -1.6]]}
    jid = _inference_job(workspace, root, {"000000": good})
    out = workspace / "pics"
    assert main(["get-job", "--job-id", jid, "--frames", '["000000"]', "--bev", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["bev_000000.png", "camera_000000.png"]
    assert "2 pictures written" in capsys.readouterr().out
