"""Issue 10 items 3-5 and 7 through the MCP client: resume continues the parent run, fine-tunes say what they
loaded, launch results list overrides and warnings, list_jobs compares runs, no orphan job on a refused start."""

import base64
import json
import sys
from pathlib import Path

import anyio
import pytest
import yaml
from mcp import Client
from tao_bevfusion.server import mcp

from tests.conftest import REPO, copy_sample
from tests.test_see_results import _until_done


@pytest.fixture
def local_kitti(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    standin = REPO / "tests" / "standin" / "bevfusion_standin.py"
    monkeypatch.setenv("TAO_BEVFUSION_LOCAL_CLI", json.dumps([sys.executable, str(standin)]))
    return copy_sample(workspace / "kitti")


def test_resume_continues_the_parent_run_and_fine_tune_says_what_it_loaded(local_kitti: Path):
    common = {"data_root": str(local_kitti), "backend": "local", "automl_policy": "off"}

    async def go():
        async with Client(mcp) as c:
            await c.call_tool("run_action", {"action": "dataset_convert", "data_root": str(local_kitti),
                                             "backend": "local", "wait_seconds": 20})
            r = await c.call_tool("run_action", {"action": "train", **common,
                                                 "overrides": {"num_epochs": 4, "batch_size": 1,
                                                               "learning_rate": 0.0001},
                                                 "env": {"FAKE_TAO_FAULT": "worker_sigkill"}})
            assert r.structured_content["overrides"] == [
                {"path": "dataset.train_dataset.batch_size", "value": 1}, {"path": "train.num_epochs", "value": 4},
                {"path": "train.optimizer.lr", "value": 0.0001}]
            assert "your overrides in the spec: dataset.train_dataset.batch_size=1" in r.content[0].text
            assert "warning: no swin_checkpoint" in r.content[0].text  # the build warning reaches run_action
            parent = r.structured_content["job_id"]
            assert (await _until_done(c, parent))["state"] == "failed"
            # a geometry change is refused; nothing is launched
            r = await c.call_tool("run_action", {"action": "train", **common, "parent_job_id": parent,
                                                 "resume": True,
                                                 "overrides": {"model.voxel_size": [0.1, 0.1, 0.2]}})
            assert r.is_error and "overrides.model.voxel_size" in r.content[0].text
            assert "fine-tune with resume=false" in r.content[0].text
            r = await c.call_tool("run_action", {"action": "train", **common, "parent_job_id": parent,
                                                 "resume": True, "overrides": {"train.checkpoint_interval": 1}})
            assert not r.is_error, r.content[0].text
            res = r.structured_content
            assert "resume: continues from" in res["lineage"] and "epoch_1.pth" in res["lineage"]
            assert "up to epoch 4" in res["lineage"] and "last_checkpoint" in res["lineage"]
            spec = yaml.safe_load(Path(_spec_of(res)).read_text())
            assert spec["train"]["num_epochs"] == 4 and spec["dataset"]["train_dataset"]["batch_size"] == 1
            assert spec["train"]["optimizer"]["lr"] == 0.0001 and spec["train"]["resume"] is True
            done = await _until_done(c, res["job_id"])
            assert done["state"] == "succeeded" and done["progress"]["epoch"] == 4
            assert done["progress"]["max_epochs"] == 4
            assert done["results_dir"] != (await c.call_tool("get_job", {"job_id": parent})
                                           ).structured_content["results_dir"]
            # the parent's history stays readable
            assert (await c.call_tool("get_job", {"job_id": parent})).structured_content["artifacts"]["checkpoints"]
            r = await c.call_tool("run_action", {"action": "train", **common, "parent_job_id": parent,
                                                 "epoch": 1, "overrides": {"num_epochs": 1}})
            assert "fine-tune: weights loaded from" in r.structured_content["lineage"]
            assert "optimizer, LR schedule and epoch counter start fresh" in r.content[0].text
    anyio.run(go)


def _spec_of(result: dict) -> str:
    from tao_bevfusion.core.settings import Settings
    from tao_bevfusion.jobs.store import JobStore

    return JobStore(Settings.from_env().home).get(result["job_id"]).spec_path


def test_resume_of_a_job_without_checkpoints_lists_what_exists(local_kitti: Path):
    async def go():
        async with Client(mcp) as c:
            await c.call_tool("run_action", {"action": "dataset_convert", "data_root": str(local_kitti),
                                             "backend": "local", "wait_seconds": 20})
            r = await c.call_tool("run_action", {"action": "train", "data_root": str(local_kitti), "backend": "local",
                                                 "automl_policy": "off", "overrides": {
                                                     "num_epochs": 2, "batch_size": 1,
                                                     "dataset.train_dataset.repeat_time": 3},
                                                 "env": {"FAKE_TAO_FAULT": "fail_at_iter"}})
            parent = r.structured_content["job_id"]
            await _until_done(c, parent)
            r = await c.call_tool("run_action", {"action": "train", "data_root": str(local_kitti),
                                                 "backend": "local", "automl_policy": "off",
                                                 "parent_job_id": parent, "resume": True})
            assert r.is_error and "no epoch_<N>.pth checkpoints" in r.content[0].text
            assert "it holds: " in r.content[0].text and "status.json" in r.content[0].text
    anyio.run(go)


def test_list_jobs_rows_sort_and_compare(local_kitti: Path):
    common = {"data_root": str(local_kitti), "backend": "local", "automl_policy": "off"}

    async def go():
        async with Client(mcp) as c:
            r = await c.call_tool("run_action", {"action": "dataset_convert", "data_root": str(local_kitti),
                                                 "backend": "local", "wait_seconds": 20})
            convert = r.structured_content["job_id"]
            ids = []
            for best, lr in ((1, 0.0002), (2, 0.0001)):
                r = await c.call_tool("run_action", {"action": "train", **common, "env": {
                    "FAKE_TAO_BEST_EPOCH": str(best)}, "overrides": {"num_epochs": 2, "learning_rate": lr}})
                ids.append(r.structured_content["job_id"])
                await _until_done(c, ids[-1])
            r = await c.call_tool("list_jobs", {"sort": "best_AP11"})
            rows = r.structured_content["jobs"]
            assert {j["job_id"] for j in rows[:2]} == set(ids)
            first = rows[0]  # the stand-in's AP depends on lr (issue 9): lr 2e-4 peaks at 40.0, lr 1e-4 lower
            assert first["job_id"] == ids[0] and rows[1]["best_AP11"] < 40.0
            assert first["hyper"]["epochs"] == 2 and first["hyper"]["lr"] in (0.0002, 0.0001)
            assert first["best_AP11"] == 40.0 and first["created"].endswith("Z") and first["ended"]
            assert first["duration_s"] is not None and first["duration_s"] >= 0
            assert rows[-1]["job_id"] == convert and rows[-1]["best_AP11"] is None
            text = r.content[0].text
            assert "succeeded (succeeded)" not in text and "best AP11 40.0 @ep" in text and "lr=" in text
            r = await c.call_tool("list_jobs", {"compare": ids})
            assert [row["job_id"] for row in r.structured_content["comparison"]] == ids
            assert r.structured_content["comparison"][1]["best_epoch"] == 2
            image = next(b for b in r.content if b.type == "image")
            assert len(base64.b64decode(image.data)) > 5000 and "bestAP11" in r.content[0].text
            r = await c.call_tool("list_jobs", {"compare": [ids[0], convert]})
            assert r.is_error and "dataset_convert job" in r.content[0].text
    anyio.run(go)
