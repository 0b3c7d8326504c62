"""Issue 17, High 1: no container gets a host folder through a link planted after build_spec. Real engine,
stand-in image, public surfaces (the API and the MCP client)."""

import json
import os
from pathlib import Path

import docker
import pytest
from tao_bevfusion.core.settings import Settings
from tao_bevfusion.jobs.context import app_context
from tao_bevfusion.specbuild.sidecar import LaunchSidecar, sign

from tests.attacks.helpers import FAST, call, finish, launch, mcp_call, refused

pytestmark = [pytest.mark.attack, pytest.mark.docker]
LABEL = "tao-bevfusion.plugin=tao-bevfusion"


def _containers(engine: docker.DockerClient) -> list:
    return engine.containers.list(all=True, filters={"label": LABEL})


@pytest.fixture
def trained(converted: Path) -> str:
    job = launch("train", converted, overrides=FAST)
    s = finish(job.job_id)
    assert s.state == "succeeded", s
    return str(job.job_id)


def _swap_to_root(folder: Path) -> None:
    """What a job's container can do in its own results folder: put a link to / where a folder was."""
    folder.rename(folder.with_name(folder.name + ".real"))
    folder.symlink_to("/")


def test_parent_folder_swapped_for_a_link_to_root_is_refused(converted: Path, trained: str,
                                                              engine: docker.DockerClient):
    built = call("build_spec", action="evaluate", data_root=str(converted), parent_job_id=trained)
    model = next(m for m in built.mounts if m.container == "/inputs/model")
    before = {c.id for c in _containers(engine)}
    _swap_to_root(Path(model.host))
    r = mcp_call("run_action", {"action": "evaluate", "spec_path": built.spec_path, "gpus": []})
    assert r.is_error and "/inputs/model" in r.content[0].text and "rebuild the spec" in r.content[0].text
    assert {c.id for c in _containers(engine)} == before  # nothing started
    assert [j.id for j in app_context().store.query(action="evaluate", limit=10)] == []
    jobs_dir = Settings.from_env().home / "jobs"
    assert not jobs_dir.exists() or all(not (d / "inputs").exists() for d in jobs_dir.iterdir())


def test_an_input_is_mounted_from_a_private_folder_the_parent_cannot_rewrite(converted: Path, trained: str,
                                                                              engine: docker.DockerClient):
    built = call("build_spec", action="evaluate", data_root=str(converted), parent_job_id=trained)
    parent_folder = Path(next(m for m in built.mounts if m.container == "/inputs/model").host)
    job = call("run_action", action="evaluate", spec_path=built.spec_path, gpus=[])
    container = engine.containers.get(f"tao-{job.job_id}")
    sources = {m["Destination"]: m["Source"] for m in container.attrs["Mounts"]}
    private = Path(sources["/inputs/model"])
    home = Settings.from_env().home
    assert private == home / "jobs" / job.job_id / "inputs" / "model"
    assert parent_folder not in [Path(s) for s in sources.values()]
    assert oct(private.stat().st_mode & 0o777) == "0o700"
    checkpoint = built.spec["evaluate"]["checkpoint"].rsplit("/", 1)[1]
    assert os.listdir(private) == [checkpoint]  # only the chosen checkpoint, none of the parent's other files
    _swap_to_root(parent_folder)  # too late: the job's folder holds its own link of the file
    assert finish(job.job_id).state == "succeeded"
    assert all(not Path(s).is_symlink() and s != "/" for s in sources.values())


def test_results_folder_whose_parent_became_a_link_is_not_created_through_it(converted: Path, docker_ws: Path,
                                                                             tmp_path: Path,
                                                                             engine: docker.DockerClient):
    parent = docker_ws / "out"
    parent.mkdir()
    built = call("build_spec", action="train", data_root=str(converted), overrides=FAST,
                 results_dir=str(parent / "run1"))
    elsewhere = tmp_path / "outside-the-roots"
    elsewhere.mkdir()
    parent.rmdir()
    parent.symlink_to(elsewhere)
    text = refused("run_action", action="train", spec_path=built.spec_path, automl_policy="off", gpus=[])
    assert "link" in text and str(parent) in text
    assert list(elsewhere.iterdir()) == [] and _containers(engine) == []
    assert app_context().store.query(limit=10) == [] or all(
        j.action == "dataset_convert" for j in app_context().store.query(limit=10))


def test_a_validly_signed_record_mounting_root_is_still_refused(converted: Path, docker_ws: Path,
                                                                engine: docker.DockerClient):
    """The attack's second half: with the signing key, a forged record mounted / read-write. The key stays out
    of every mount, and even a record signed with it cannot mount anything outside the roots or the state dir."""
    built = call("build_spec", action="train", data_root=str(converted), overrides=FAST)
    side_path = Path(built.spec_path).with_name(Path(built.spec_path).stem + ".launch.json")
    home = Settings.from_env().home
    for host in ("/", str(home), str(home.parent)):
        record = LaunchSidecar.model_validate_json(side_path.read_text())
        record.mounts.append(record.mounts[0].model_copy(update={"host": host, "container": "/hostroot",
                                                                 "mode": "rw"}))
        side_path.write_text(sign(record, home).model_dump_json())
        text = refused("run_action", action="train", spec_path=built.spec_path, automl_policy="off", gpus=[])
        assert "outside the allowed roots" in text or "state dir" in text, text
    assert _containers(engine) == [] or all("convert" in json.dumps(c.labels) for c in _containers(engine))


def test_dataset_root_swapped_for_a_link_after_build_is_refused_at_submit(converted: Path, docker_ws: Path,
                                                                          engine: docker.DockerClient):
    """Even a link that stays inside the roots is refused: the engine would resolve it at start, not the plugin."""
    built = call("build_spec", action="train", data_root=str(converted), overrides=FAST)
    real = converted.with_name("kitti.real")
    converted.rename(real)
    converted.symlink_to(real)
    text = refused("run_action", action="train", spec_path=built.spec_path, automl_policy="off", gpus=[])
    assert "a link was put on its path" in text and "/data" in text
    assert [c for c in _containers(engine) if "train" in json.dumps(c.labels)] == []
    assert app_context().store.query(action="train", limit=10) == []


def test_a_dry_run_leaves_no_inputs_and_its_plan_submits_with_private_inputs(converted: Path, trained: str,
                                                                              engine: docker.DockerClient):
    dry = call("run_action", action="evaluate", data_root=str(converted), parent_job_id=trained, gpus=[],
               dry_run=True)
    jobs_dir = Settings.from_env().home / "jobs"
    planned = next(m for m in dry.plan.mounts if m.container == "/inputs/model")
    assert Path(planned.host).parent.parent.parent == jobs_dir and not Path(planned.host).exists()
    job = call("run_action", action="evaluate", plan_id=dry.plan_id)
    sources = {m["Destination"]: m["Source"] for m in engine.containers.get(f"tao-{job.job_id}").attrs["Mounts"]}
    assert sources["/inputs/model"] == planned.host and os.listdir(planned.host)
    assert finish(job.job_id).state == "succeeded"
