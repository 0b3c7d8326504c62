"""The rendered sbatch script on a real single-host Slurm cluster (scripts/slurm_cluster.sh), docker runtime.

Proves the 5.5 launch shape for real: `torchrun --nproc_per_node=1 --nnodes=2` and nothing else on the
command line, node rank / master address / port from the PET_* variables the script sets, a gloo
all_reduce across the two nodes; plus scancel leaving no container behind, a failing job, per-node logs.
"""

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from tao_bevfusion.backends.slurm.script import Mount, Runtime, SlurmJob, render

from tests.rendezvous.image import CHECK_IN_IMAGE, ensure_image

pytestmark = pytest.mark.docker
REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "slurm_cluster.sh"
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}


@pytest.fixture(scope="module")
def slurm(engine: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The cluster's env (SLURM_CONF, DOCKER_HOST ...); started here when CI has not started it already."""
    env = dict(os.environ)
    env.setdefault("SLURM_CLUSTER_DIR", "/tmp/tao-slurm")
    conf = Path(env["SLURM_CLUSTER_DIR"]) / "etc" / "slurm.conf"
    was_up = conf.exists() and subprocess.run(["scontrol", "ping"], env={**env, "SLURM_CONF": str(conf)},
                                              capture_output=True).returncode == 0
    up = subprocess.run([str(SCRIPT), "up"], env=env, capture_output=True, text=True, timeout=300)
    if up.returncode != 0:
        pytest.skip(f"scripts/slurm_cluster.sh up failed (rc {up.returncode}): {up.stderr.strip()[-400:]}")
    for line in (Path(env["SLURM_CLUSTER_DIR"]) / "env").read_text().splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = value
    yield env
    if not was_up:
        subprocess.run([str(SCRIPT), "stop"], env=env, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def rdzv_image(engine: docker.DockerClient) -> str:
    return ensure_image(engine)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _job(tmp: Path, image: str, name: str, command: list[str]) -> SlurmJob:
    (tmp / "logs").mkdir()
    (tmp / "out").mkdir()
    return SlurmJob(job_name=name, num_nodes=2, gpus_per_node=0, runtime=Runtime.DOCKER, image=image,
                    log_dir=str(tmp / "logs"), mounts=[Mount(host=str(tmp / "out"), container="/out")],
                    env={"RDZV_OUT": "/out"}, command=command, master_port=_free_port(),
                    end_record=str(tmp / "end.json"))


def _submit(job: SlurmJob, tmp: Path, env: dict[str, str]) -> str:
    script = tmp / f"{job.job_name}.sbatch"
    script.write_text(render(job))
    out = subprocess.run(["sbatch", "--parsable", str(script)], env=env, capture_output=True, text=True,
                         timeout=30, check=True)
    return out.stdout.strip().split(";")[0]


def _state(job_id: str, env: dict[str, str]) -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "job", job_id, "-o"], env=env, capture_output=True, text=True,
                         timeout=30, check=True).stdout
    return dict(word.partition("=")[::2] for word in out.split() if "=" in word)


def _wait(job_id: str, env: dict[str, str], states: set[str], timeout: float) -> dict[str, str]:
    end = time.monotonic() + timeout
    while True:
        info = _state(job_id, env)
        if info["JobState"] in states or time.monotonic() > end:
            return info
        time.sleep(0.1)


def _containers(engine: docker.DockerClient, job_id: str) -> list[str]:
    # The low-level list: containers.list() inspects each one and races with their removal.
    found = engine.api.containers(all=True, filters={"label": f"tao-bevfusion.slurm-job={job_id}"})
    return [c["Names"][0] for c in found]


def test_two_nodes_rendezvous_from_pet_env_alone(slurm: dict[str, str], rdzv_image: str, tmp_path: Path) -> None:
    job = _job(tmp_path, rdzv_image, "rdzv", ["torchrun", "--nproc_per_node=1", "--nnodes=2", CHECK_IN_IMAGE])
    t0 = time.monotonic()
    job_id = _submit(job, tmp_path, slurm)
    info = _wait(job_id, slurm, TERMINAL, 180)
    print(f"\n[timing] rendezvous job {job_id}: sbatch -> {info['JobState']} in {time.monotonic() - t0:.1f} s")
    logs = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert info["JobState"] == "COMPLETED", (info, [(tmp_path / "logs" / n).read_text()[-2000:] for n in logs])
    assert info["NumNodes"] == "2" and info["ExitCode"] == "0:0"
    ranks = [json.loads((tmp_path / "out" / f"rank{r}.json").read_text()) for r in (0, 1)]
    for r, result in enumerate(ranks):
        assert result["rank"] == r and result["world_size"] == 2
        assert result["sum"] == result["expected"] == 1.0            # 0 + 1, reduced across both nodes
        assert result["node_rank"] == str(r)                         # torchrun's GROUP_RANK, from PET_NODE_RANK
        assert result["master"] == f"127.0.0.1:{job.master_port}"    # NodeAddr of n1, port from PET_MASTER_PORT
    assert logs == [f"rdzv-{job_id}-node0.log", f"rdzv-{job_id}-node1.log", f"rdzv-{job_id}.batch.log"]
    for node in (0, 1):
        assert f'"rank": {node}' in (tmp_path / "logs" / f"rdzv-{job_id}-node{node}.log").read_text()
    assert json.loads((tmp_path / "end.json").read_text())["state"] == "COMPLETED"
    sacct = subprocess.run(["sacct", "-c", "-j", job_id, "-P", "-n", "-o", "State,ExitCode"], env=slurm,
                           capture_output=True, text=True, timeout=30)
    assert sacct.stdout.split() == ["COMPLETED|0:0"]


def test_scancel_leaves_no_container(slurm: dict[str, str], rdzv_image: str, tmp_path: Path,
                                     engine: docker.DockerClient) -> None:
    job = _job(tmp_path, rdzv_image, "sleeper", ["python3", "-c", "import time; time.sleep(300)"])
    t0 = time.monotonic()
    job_id = _submit(job, tmp_path, slurm)
    while len(_containers(engine, job_id)) < 2 and time.monotonic() - t0 < 60:
        time.sleep(0.1)
    running = time.monotonic()
    assert len(_containers(engine, job_id)) == 2, _state(job_id, slurm)
    assert _state(job_id, slurm)["JobState"] == "RUNNING"
    subprocess.run(["scancel", job_id], env=slurm, check=True, timeout=30)
    t1 = time.monotonic()
    while _containers(engine, job_id) and time.monotonic() - t1 < 30:
        time.sleep(0.05)
    gone = time.monotonic()
    info = _wait(job_id, slurm, TERMINAL, 30)
    print(f"\n[timing] sleeper job {job_id}: sbatch -> 2 containers up {running - t0:.1f} s; "
          f"scancel -> containers gone {gone - t1:.2f} s, -> {info['JobState']} {time.monotonic() - t1:.2f} s")
    assert _containers(engine, job_id) == []
    assert info["JobState"] == "CANCELLED"
    assert json.loads((tmp_path / "end.json").read_text())["state"] == "CANCELLED"


def test_failing_node_fails_the_job_with_its_exit_code(slurm: dict[str, str], rdzv_image: str,
                                                       tmp_path: Path, engine: docker.DockerClient) -> None:
    # Node 1 fails at once; node 0 would run for 300 s unless --kill-on-bad-exit stops it.
    code = "import os, sys, time; sys.exit(3) if os.environ['PET_NODE_RANK'] == '1' else time.sleep(300)"
    job = _job(tmp_path, rdzv_image, "failer", ["python3", "-c", code])
    t0 = time.monotonic()
    job_id = _submit(job, tmp_path, slurm)
    info = _wait(job_id, slurm, TERMINAL, 120)
    assert info["JobState"] == "FAILED" and time.monotonic() - t0 < 60
    assert info["ExitCode"] != "0:0"   # srun's highest task code: the killed node's 143
    record = json.loads((tmp_path / "end.json").read_text())
    assert record["state"] == "FAILED" and record["srun_rc"] != 0
    logs = tmp_path / "logs"
    assert "tao: node 1 exited 3" in (logs / f"failer-{job_id}-node1.log").read_text()
    assert "tao: node 0 terminated" in (logs / f"failer-{job_id}-node0.log").read_text()
    assert _containers(engine, job_id) == []
