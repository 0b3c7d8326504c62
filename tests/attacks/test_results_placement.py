"""Issue 17, Medium 4 and 5: where a results folder (mounted read-write) may be. Not the dataset in either
direction, not the home directory or its dot-folders, not above the state dir, not inside or around another
job's or study's folder; a second study never goes into a used study folder."""

import json
import shutil
from pathlib import Path

import pytest

from tests.attacks.helpers import FAST, call, cli, finish, launch, mcp_call, refused

pytestmark = pytest.mark.attack


@pytest.mark.parametrize("where", ["same", "inside", "parent"])
def test_results_dir_may_not_overlap_the_dataset(raw_root: Path, where: str):
    results = {"same": raw_root, "inside": raw_root / "training" / "out", "parent": raw_root.parent}[where]
    text = refused("build_spec", action="train", data_root=str(raw_root), results_dir=str(results))
    assert "results_dir" in text and "dataset root" in text and "fresh results_dir" in text


def test_results_dir_may_not_be_a_home_dot_folder_or_hold_the_home(raw_root: Path, workspace: Path,
                                                                   monkeypatch: pytest.MonkeyPatch):
    user_home = workspace / "userhome"
    (user_home / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(user_home))
    for results in (user_home / ".ssh", user_home / ".aws" / "run", user_home):
        rc, _, err = cli("build-spec", "--action", "train", "--data-root", str(raw_root),
                         "--results-dir", str(results))
        assert rc == 2 and "results_dir" in err and ("dot-folder" in err or "home directory" in err), err
    assert sorted(p.name for p in user_home.iterdir()) == [".ssh"]
    ok = call("build_spec", action="train", data_root=str(raw_root), results_dir=str(user_home / "runs" / "a"))
    assert ok.results_dir == str(user_home / "runs" / "a")


def test_results_dir_may_not_hold_the_state_dir(raw_root: Path, workspace: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TAO_BEVFUSION_HOME", str(workspace / "deep" / "state"))
    for field, value in (("results_dir", workspace / "deep"), ("output_path", workspace / "deep" / "s.yaml")):
        text = refused("build_spec", action="train", data_root=str(raw_root), **{field: str(value)})
        assert "contains the state dir" in text and field in text


@pytest.mark.docker
def test_results_dir_inside_or_around_another_jobs_folder_is_refused(converted: Path, docker_ws: Path):
    first = launch("train", converted, overrides=FAST, results_dir=str(docker_ws / "exp" / "run1"))
    assert finish(first.job_id).state == "succeeded"
    for results in (docker_ws / "exp" / "run1" / "train" / "again", docker_ws / "exp"):
        r = mcp_call("run_action", {"action": "train", "data_root": str(converted), "automl_policy": "off",
                                    "gpus": [], "overrides": FAST, "results_dir": str(results)})
        assert r.is_error and first.job_id in r.content[0].text and "overlaps" in r.content[0].text
    inner_data = docker_ws / "exp" / "run1" / "kitti"
    shutil.copytree(converted, inner_data, symlinks=True)
    text = refused("run_action", action="evaluate", data_root=str(inner_data), parent_job_id=first.job_id,
                   gpus=[])
    assert "data_root" in text and "that job's container can replace it" in text
    beside = launch("train", converted, overrides=FAST, results_dir=str(docker_ws / "exp2" / "run2"))
    assert beside.job_id and finish(beside.job_id).state == "succeeded"


def _study_args(root: Path, **kw):
    return {"action": "train", "data_root": str(root), "gpus": [], "overrides": {"batch_size": 1},
            "env": {"FAKE_TAO_ITER_SECONDS": "0.2"},
            "automl_settings": {"automl_max_recommendations": 2, "automl_max_concurrent": 1,
                                "automl_max_epochs": 2}, **kw}


@pytest.mark.docker
def test_a_second_study_into_a_finished_studys_folder_is_refused(converted: Path, docker_ws: Path,
                                                                 monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TAO_BEVFUSION_AUTOML_TICK", "0.3")
    folder = docker_ws / "studyA"
    first = call("run_action", **_study_args(converted, results_dir=str(folder)), confirm=True)
    assert first.state == "running"
    call("cancel_job", job_id=first.job_id)
    assert finish(first.job_id, timeout=60).state not in ("pending", "running")
    before = (folder / "study.json").read_bytes()
    r = mcp_call("run_action", {**_study_args(converted, results_dir=str(folder)), "confirm": True})
    assert r.is_error and "already holds the outputs" in r.content[0].text and first.job_id in r.content[0].text
    assert (folder / "study.json").read_bytes() == before
    marked = docker_ws / "copied-study"
    marked.mkdir()
    (marked / "trials.json").write_text(json.dumps([]))
    text = refused("run_action", **_study_args(converted, results_dir=str(marked)), confirm=True)
    assert "trials.json" in text
