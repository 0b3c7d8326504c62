"""The sbatch renderer: golden scripts per runtime, bash syntax, quoting of hostile values, refused input."""

import os
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError
from tao_bevfusion.backends.slurm.script import GpuFlag, Mount, Runtime, SlurmJob, render

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("TAO_BEVFUSION_UPDATE_GOLDEN") == "1"


def _job(runtime: Runtime, **over: object) -> SlurmJob:
    image = "/shared/images/tao-5.5.sif" if runtime is Runtime.APPTAINER else "nvcr.io/nvidia/tao/tao-toolkit:5.5.0-pyt"
    fields: dict[str, object] = dict(
        job_name="tao-train-1a2b", num_nodes=2, gpus_per_node=4, runtime=runtime, image=image,
        cpus_per_task=32, mem="200G", time_limit="1-00:00:00", partition="gpu", account="proj42",
        log_dir="/shared/results/train/logs", end_record="/shared/results/train/slurm_end.json",
        mounts=[Mount(host="/shared/kitti", container="/data", read_only=True),
                Mount(host="/shared/results", container="/results")],
        env={"TAO_BEVFUSION_JOB": "1a2b"}, workdir="/results",
        command=["bevfusion", "train", "-e", "/results/specs/train.yaml", "results_dir=/results/train"])
    fields.update(over)
    return SlurmJob.model_validate(fields)


@pytest.mark.parametrize("runtime", list(Runtime))
def test_golden(runtime: Runtime) -> None:
    text = render(_job(runtime, user="1000:1000" if runtime is Runtime.DOCKER else None))
    path = GOLDEN / f"slurm_{runtime.value}.sbatch"
    if UPDATE:
        path.write_text(text)
    assert text == path.read_text()
    subprocess.run(["bash", "-n"], input=text, text=True, check=True)


def test_options_render_only_when_set_and_gpu_flag_style() -> None:
    bare = render(_job(Runtime.PYXIS, partition=None, account=None, cpus_per_task=None, mem=None, time_limit=None,
                       gpu_flag=GpuFlag.GPUS_PER_NODE))
    sbatch = [line for line in bare.splitlines() if line.startswith("#SBATCH")]
    assert sbatch == ["#SBATCH --job-name=tao-train-1a2b", "#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1",
                      "#SBATCH --gpus-per-node=4", "#SBATCH --output=/shared/results/train/logs/%x-%j.batch.log"]
    assert "--qos" not in bare and "--reservation" not in bare
    assert "NUM_GPU_PER_NODE=4" in bare and "PET_NNODES=2" in bare and "WORLD_SIZE=2" in bare


def _stubs(bin_dir: Path, argv_log: Path) -> None:
    """scontrol / srun / docker stand-ins: enough to run the rendered script on one fake node."""
    bin_dir.mkdir()
    scripts = {
        "scontrol": '[ "$2" = hostnames ] && echo n1 || echo "NodeName=n1 Arch=x86_64 NodeAddr=10.1.2.3 Port=0"',
        "srun": 'SLURM_NODEID=0 "${@: -3}"',
        "docker": f'printf "%s\\n" "$@" > {argv_log}; env > {argv_log}.env',
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)


def test_hostile_values_stay_literal(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = f"$(touch {marker})"
    job = _job(Runtime.DOCKER, env={"TAO_NOTE": f"a'b {evil} `touch {marker}`"},
               mounts=[Mount(host=f"/shared/{evil}", container="/data")],
               command=["bevfusion", "train", f"; touch {marker}", evil], end_record=str(tmp_path / "end.json"))
    script = tmp_path / "job.sbatch"
    script.write_text(render(job))
    argv_log = tmp_path / "argv"
    _stubs(tmp_path / "bin", argv_log)
    env = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "SLURM_JOB_NODELIST": "n1", "SLURM_JOB_ID": "77"}
    subprocess.run(["bash", str(script)], env=env, check=True, timeout=30, cwd=tmp_path)
    assert not marker.exists()
    argv = argv_log.read_text().splitlines()
    assert f"/shared/{evil}:/data" in argv
    assert argv[-4:] == ["bevfusion", "train", f"; touch {marker}", evil]
    child_env = argv_log.with_suffix(".env").read_text()
    assert f"TAO_NOTE=a'b {evil} `touch {marker}`" in child_env
    for line in ("PET_NODE_RANK=0", "PET_NNODES=2", "PET_MASTER_ADDR=10.1.2.3", "PET_MASTER_PORT=29500",
                 "NODE_RANK=0", "WORLD_SIZE=2", "MASTER_ADDR=10.1.2.3", "NUM_GPU_PER_NODE=4"):
        assert line in child_env.splitlines()
    assert "--name" in argv and argv[argv.index("--name") + 1] == "tao-train-1a2b-77-node0"
    assert '"state": "COMPLETED"' in (tmp_path / "end.json").read_text()


@pytest.mark.parametrize("over", [
    {"env": {"PET_NODE_RANK": "1"}}, {"env": {"MASTER_ADDR": "x"}}, {"env": {"bad-name": "x"}},
    {"partition": "gpu\n#SBATCH --uid=0"}, {"account": "a b"}, {"log_dir": "/logs/$(reboot)"},
    {"log_dir": "relative"}, {"num_nodes": 0}, {"job_name": "-x"}, {"mem": "lots"}, {"time_limit": "soon"},
    {"node_log": "same-for-every-node.log"}, {"command": []},
])
def test_refused(over: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        _job(Runtime.DOCKER, **over)


def test_mount_paths_that_cannot_be_expressed() -> None:
    for host in ("/a:b", "/a,b", "relative", "/a\nb"):
        with pytest.raises(ValidationError):
            Mount(host=host, container="/data")
