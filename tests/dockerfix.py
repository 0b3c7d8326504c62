"""Docker fixtures: a reachable engine (started privately when none is, as .ci/run does) and the stand-in."""

import os
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.standin.image import ensure_image

HOST_MEMLOCK = resource.getrlimit(resource.RLIMIT_MEMLOCK)[1]


def _reachable() -> bool:
    try:
        docker.from_env(timeout=5).ping()
        return True
    except Exception:
        return False


def _start_private_engine() -> tuple[subprocess.Popen, Path] | None:
    if os.geteuid() != 0 or not shutil.which("dockerd"):
        return None
    root = Path(tempfile.mkdtemp(prefix="tao-test-dockerd."))
    sock = root / "docker.sock"
    with open(root / "dockerd.log", "wb") as log:
        proc = _spawn(root, sock, log)
    os.environ["DOCKER_HOST"] = f"unix://{sock}"
    for _ in range(120):
        if _reachable():
            return proc, root
        if proc.poll() is not None:
            break
        time.sleep(0.25)
    proc.terminate()
    return None


def _spawn(root: Path, sock: Path, log) -> subprocess.Popen:
    return subprocess.Popen(
        ["dockerd", f"--data-root={root}/data", f"--exec-root={root}/exec", f"--pidfile={root}/pid",
         f"--host=unix://{sock}", "--storage-driver=overlay2", "--iptables=false", "--ip-forward=false",
         "--bridge=none"], stdout=log, stderr=subprocess.STDOUT)




def containers_of(client: docker.DockerClient, under: Path) -> list:
    """The plugin's containers that mount something under `under` (this test's or this session's folders):
    never another session's or a user's jobs on the same engine."""
    found = client.containers.list(all=True, filters={"label": "tao-bevfusion.plugin=tao-bevfusion"})
    return [c for c in found if any(Path(m.get("Source", "/")).is_relative_to(under) for m in c.attrs["Mounts"])]


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[docker.DockerClient]:
    started = None
    if not _reachable():
        started = _start_private_engine()
        if started is None:
            pytest.skip("no Docker engine could be reached or started (CI always starts one: see .ci/run)")
    client = docker.from_env()
    yield client
    for c in containers_of(client, tmp_path_factory.getbasetemp()):
        c.remove(force=True)
    if started:
        proc, root = started
        proc.terminate()
        proc.wait(timeout=30)
        subprocess.run(["umount", "/run/docker/netns/default"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def standin(engine: docker.DockerClient) -> str:
    return ensure_image(engine)


@pytest.fixture
def docker_ws(workspace: Path, standin: str, engine: docker.DockerClient,
              monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A workspace whose launches use the stand-in image; every container it made is removed after."""
    monkeypatch.setenv("TAO_BEVFUSION_IMAGE", standin)
    monkeypatch.setenv("TAO_BEVFUSION_MEMLOCK", str(HOST_MEMLOCK))
    yield workspace
    for c in containers_of(engine, workspace):
        c.remove(force=True)


@pytest.fixture
def study_kitti(docker_ws: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A converted KITTI sample for AutoML studies, whose driver ticks every 0.3 s."""
    from tao_bevfusion.jobs.launch import RunActionInput
    from tao_bevfusion.service.run import run_action

    from tests.conftest import copy_sample, finish

    monkeypatch.setenv("TAO_BEVFUSION_AUTOML_TICK", "0.3")
    root = copy_sample(docker_ws / "kitti")
    job = run_action(RunActionInput(action="dataset_convert", data_root=str(root), gpus=[]))
    assert job.job_id and finish(job.job_id, 60).state == "succeeded"
    return root
