"""Shared fixtures: a writable copy of the real KITTI sample and an isolated state/roots environment."""

import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from tao_bevfusion.core.settings import Settings

pytest_plugins = ["tests.dockerfix", "tests.result_sizes", "tests.mlflowfix"]

REPO = Path(__file__).resolve().parents[1]
SERVE_ARGS = ["-m", "tao_bevfusion.cli", "serve"]  # the MCP server, as a client starts it
DATA = REPO / "tests" / "data"
KITTI_SAMPLE = DATA / "kitti_sample"  # two real KITTI frames; licence and provenance in SOURCE.md there


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An allowed root with its own state dir; TAO_BEVFUSION_* point at it for the test."""
    ws = tmp_path / "ws"
    (ws / "home").mkdir(parents=True)
    monkeypatch.setenv("TAO_BEVFUSION_HOME", str(ws / "home"))
    monkeypatch.setenv("TAO_BEVFUSION_ROOTS", str(ws))
    return ws


def finish(job_id: str, timeout: float = 240) -> Any:
    """Poll get_job until the job has ended (or `timeout` passed: the last summary, still live, is returned)."""
    from tao_bevfusion.service.jobs import get_job

    deadline = time.monotonic() + timeout
    while (s := get_job(job_id)).state in ("pending", "running") and time.monotonic() < deadline:
        time.sleep(0.3)
    return s


@pytest.fixture
def settings(workspace: Path) -> Settings:
    return Settings.from_env()


def copy_sample(dest: Path) -> Path:
    shutil.copytree(KITTI_SAMPLE, dest)
    for dirpath, _dirs, filenames in os.walk(dest):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o644)
    return dest


@pytest.fixture
def kitti(workspace: Path) -> Path:
    """A writable copy of tests/data/kitti_sample (real KITTI frames 000000 and 000008)."""
    return copy_sample(workspace / "kitti")
