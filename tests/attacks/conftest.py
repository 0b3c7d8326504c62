"""Fixtures for the attack suite: a converted KITTI root on the real engine with the stand-in image."""

from pathlib import Path

import pytest

from tests.attacks.helpers import finish, launch
from tests.conftest import copy_sample


@pytest.fixture
def raw_root(workspace: Path) -> Path:
    return copy_sample(workspace / "kitti")


@pytest.fixture
def converted(docker_ws: Path) -> Path:
    root = copy_sample(docker_ws / "kitti")
    s = finish(launch("dataset_convert", root).job_id)
    assert s.state == "succeeded", s
    return root
