"""Issue 17 items 6 and 12 through the MCP client: predictions files written by a job are data. A deeply
nested file becomes a detections.problems entry, and a frame with 8,000 boxes is drawn with a bounded
number of them (the picture says how many were left out)."""

import json
from pathlib import Path

import anyio
from mcp import Client
from tao_bevfusion.server import mcp

from tests.conftest import copy_sample
from tests.test_see_results import _inference_job

GOOD = {"labels_3d": [0], "scores_3d": [0.9], "bboxes_3d": [[8.7, -1.9, -1.6, 1.2, 0.5, 1.9, 0, 0, -1.6]]}


def test_a_deeply_nested_predictions_file_is_a_problem_not_a_failed_get_job(workspace: Path):
    root = copy_sample(workspace / "kitti")
    jid = _inference_job(workspace, root, {"000000": GOOD, "000008": "[" * 200_000 + "]" * 200_000})

    async def go():
        async with Client(mcp) as c:
            r = await c.call_tool("get_job", {"job_id": jid})
            assert not r.is_error, r.content[0].text
            det = r.structured_content["detections"]
            assert det["frames"] == 1 and any("nested too deeply" in p for p in det["problems"]), det
    anyio.run(go)


def _many_boxes(n: int) -> dict[str, list]:
    rows = [[5.0 + (i % 80) * 0.5, -20.0 + (i // 80) * 0.4, -1.6, 0.6, 0.5, 1.7, 0, 0, 0.1 * i] for i in range(n)]
    return {"labels_3d": [0] * n, "scores_3d": [0.5 + 0.5 * (i % 997) / 997 for i in range(n)], "bboxes_3d": rows}


def test_a_frame_with_8000_boxes_draws_the_best_200(workspace: Path):
    """8,000 boxes above the threshold (old code: every one drawn and labelled, over 150 s): the BEV and
    camera pictures come back well inside a minute, drawing the best-scored MAX_DRAWN."""
    import time

    from tao_bevfusion.evidence.predictions import read_frame
    from tao_bevfusion.present.viz.scene import MAX_DRAWN, load_scene

    root = copy_sample(workspace / "kitti")
    jid = _inference_job(workspace, root, {"000000": _many_boxes(8000)})
    scene = load_scene(root, "000000", read_frame(workspace / "inf" / "inference" / "preds" / "000000.json"))
    assert int(scene.shown.sum()) == MAX_DRAWN and scene.pred_scores[scene.shown].min() >= 0.9

    async def go():
        async with Client(mcp) as c:
            started = time.monotonic()
            r = await c.call_tool("get_job", {"job_id": jid, "frames": ["000000"]}, read_timeout_seconds=None)
            return r, time.monotonic() - started
    r, took = anyio.run(go)
    assert not r.is_error, r.content[0].text
    assert sum(b.type == "image" for b in r.content) >= 1 and took < 60, took
    assert json.dumps(r.structured_content).count("8000") >= 1
