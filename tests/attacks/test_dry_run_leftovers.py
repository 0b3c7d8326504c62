"""Issue 17 item 20 through the MCP client: a dry run leaves nothing but its plan (the plan record and the
spec folder it would submit), and an expired plan that was never submitted takes its spec folder with it."""

import json
import time
from pathlib import Path

import pytest

from tests.attacks.helpers import mcp_call

pytestmark = [pytest.mark.attack]


def _files(ws: Path) -> set[str]:
    return {str(p.relative_to(ws)) for p in ws.rglob("*") if "kitti" not in p.relative_to(ws).parts}


def test_a_dry_run_leaves_only_its_plan_and_an_expired_plan_leaves_nothing(raw_root: Path, workspace: Path):
    mcp_call("list_jobs", {})
    before = _files(workspace)
    r = mcp_call("run_action", {"action": "train", "data_root": str(raw_root), "dry_run": True, "gpus": [],
                                "automl_policy": "off"})
    plan_id = r.structured_content["plan_id"]
    new = _files(workspace) - before
    plan = workspace / "home" / "plans" / f"{plan_id}.json"
    spec_dir = Path(json.loads(plan.read_text())["spec_path"]).parent
    allowed = {"home/plans", str(plan.relative_to(workspace)), "home/specs", "home/sidecar.key",
               str(spec_dir.relative_to(workspace))}
    assert {f for f in new if not f.startswith(str(spec_dir.relative_to(workspace)))} <= allowed, new
    assert not (workspace / "home" / "jobs").exists() or not any((workspace / "home" / "jobs").iterdir())
    saved = json.loads(plan.read_text())
    saved["created_at"] = time.time() - 2 * 24 * 3600
    plan.write_text(json.dumps(saved))
    mcp_call("run_action", {"action": "dataset_convert", "data_root": str(raw_root), "dry_run": True, "gpus": []})
    assert not plan.exists() and not spec_dir.exists()
