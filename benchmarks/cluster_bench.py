"""Cluster backends, measured (issue 12). Needs the single-host Slurm cluster (scripts/slurm_cluster.sh up; started
here when it is not up) and a Docker engine for the docker runtime.

    python3 benchmarks/cluster_bench.py [--quick]

- submit overhead: SlurmBackend.submit(plan) against a plain `sbatch --parsable` of the same script (ratio)
- scancel -> containers gone: a 2-node docker-runtime job, cancel through the backend
- time to state after the job ends: the job's own end record appears -> poll() says exited
- manifest validation: `kubernetes-validate --strict` of the rendered Kubernetes manifests
Writes benchmarks/cluster_results[.quick].json.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tao_bevfusion.backends.kubernetes.manifests import K8sJob, Volume, render_yaml  # noqa: E402
from tao_bevfusion.backends.slurm.backend import SlurmBackend, SlurmPlan  # noqa: E402
from tao_bevfusion.backends.slurm.script import Mount, Runtime, SlurmJob, render  # noqa: E402

RESULTS: dict[str, object] = {}
CLUSTER = REPO / "scripts" / "slurm_cluster.sh"


def cluster_env() -> bool:
    up = subprocess.run([str(CLUSTER), "up"], capture_output=True, text=True, timeout=300)
    if up.returncode != 0:
        RESULTS["slurm"] = f"skipped: slurm_cluster.sh up failed: {up.stderr.strip()[-300:]}"
        return False
    env_file = Path(os.environ.get("SLURM_CLUSTER_DIR", "/tmp/tao-slurm")) / "env"
    for line in env_file.read_text().splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        os.environ.setdefault(name, value)
    return True


def _plan(tmp: Path, name: str, image: str, command: list[str]) -> SlurmPlan:
    log_dir = tmp / name
    job = SlurmJob(job_name=name, num_nodes=2, gpus_per_node=0, runtime=Runtime.DOCKER, image=image,
                   log_dir=str(log_dir), mounts=[Mount(host=str(tmp), container="/work")], command=command,
                   end_record=str(log_dir / "end.json"))
    return SlurmPlan(backend="slurm", job_id=name, command=command, equivalent_cli=[], mounts=[], env={},
                     script=render(job), script_path=str(log_dir / f"{name}.sbatch"), job_name=name,
                     log_dir=str(log_dir), end_record=str(log_dir / "end.json"), num_nodes=2, gpus_per_node=0,
                     partition=None, runtime="docker")


def _cancel(slurm_id: str) -> None:
    subprocess.run(["scancel", slurm_id], capture_output=True, timeout=30)


def bench_submit(tmp: Path, image: str, n: int) -> None:
    backend = SlurmBackend()
    ours, plain = [], []
    for i in range(n):
        plan = _plan(tmp, f"sub{i}", image, ["true"])
        t = time.perf_counter()
        handle = backend.submit(plan)
        ours.append(time.perf_counter() - t)
        _cancel(handle.split(":")[1])
        t = time.perf_counter()
        out = subprocess.run(["sbatch", "--parsable", plan.script_path], capture_output=True, text=True, check=True)
        plain.append(time.perf_counter() - t)
        _cancel(out.stdout.strip().split(";")[0])
    a, b = statistics.median(ours), statistics.median(plain)
    RESULTS["submit"] = {"backend_median_ms": round(a * 1000, 1), "plain_sbatch_median_ms": round(b * 1000, 1),
                         "ratio": round(a / b, 2), "goal": "< 1.3", "pairs": n}


def _containers(engine: Any, slurm_id: str) -> list[dict[str, Any]]:
    # The low-level list: containers.list() inspects each one and races with their removal.
    label = f"tao-bevfusion.slurm-job={slurm_id}"
    found: list[dict[str, Any]] = engine.api.containers(all=True, filters={"label": label})
    return found


def bench_cancel(tmp: Path, image: str, engine: Any, n: int) -> None:
    backend, gone = SlurmBackend(), []
    for i in range(n):
        plan = _plan(tmp, f"cancel{i}", image, ["python3", "-c", "import time; time.sleep(300)"])
        handle = backend.submit(plan)
        slurm_id = handle.split(":")[1]
        end = time.monotonic() + 60
        while len(_containers(engine, slurm_id)) < 2 and time.monotonic() < end:
            time.sleep(0.05)
        t = time.perf_counter()
        backend.cancel(handle, force=False)
        while _containers(engine, slurm_id) and time.perf_counter() - t < 60:
            time.sleep(0.02)
        gone.append(time.perf_counter() - t)
    RESULTS["scancel_to_containers_gone"] = {"median_s": round(statistics.median(gone), 2),
                                            "max_s": round(max(gone), 2), "runs": n}


def bench_state_after_end(tmp: Path, image: str, n: int) -> None:
    backend, lag, polls = SlurmBackend(), [], []
    for i in range(n):
        plan = _plan(tmp, f"end{i}", image, ["true"])
        handle = backend.submit(plan)
        record = Path(plan.end_record)
        end = time.monotonic() + 120
        while not record.exists() and time.monotonic() < end:
            time.sleep(0.02)
        t = time.perf_counter()
        while backend.poll(handle).state != "exited" and time.perf_counter() - t < 60:
            time.sleep(0.05)
        lag.append(time.perf_counter() - t)
        t = time.perf_counter()
        backend.poll(handle)
        polls.append(time.perf_counter() - t)
    RESULTS["state_after_end"] = {"end_record_to_exited_median_s": round(statistics.median(lag), 2),
                                  "poll_median_ms": round(statistics.median(polls) * 1000, 1), "runs": n}


def bench_validate(tmp: Path, n: int) -> None:
    exe = shutil.which("kubernetes-validate")
    if exe is None:
        RESULTS["manifest_validation"] = "skipped: kubernetes-validate not installed"
        return
    job = K8sJob(name="tao-bench", namespace="default", num_nodes=4, gpus_per_node=8, image="nvcr.io/x:5.5",
                 command=["bevfusion", "train", "-e", "/specs/train.yaml"], memory="200Gi",
                 volumes=[Volume(name="data", mount_path="/data", claim="kitti")],
                 spec_files={"train.yaml": "train: {}\n"})
    path = tmp / "manifests.yaml"
    t = time.perf_counter()
    text = render_yaml(job)
    render_ms = (time.perf_counter() - t) * 1000
    path.write_text(text)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run([exe, "--strict", str(path)], check=True, capture_output=True, timeout=120)
        times.append(time.perf_counter() - t)
    RESULTS["manifest_validation"] = {"render_ms": round(render_ms, 2), "validate_median_s": round(
        statistics.median(times), 2), "documents": 3, "runs": n}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n = 3 if args.quick else 10
    with tempfile.TemporaryDirectory(prefix="tao-cluster-bench.") as raw:
        tmp = Path(raw)
        os.chmod(tmp, 0o755)
        bench_validate(tmp, n)
        if cluster_env():
            import docker

            from tests.rendezvous.image import ensure_image

            engine = docker.from_env()
            image = ensure_image(engine)
            bench_submit(tmp, image, n * 2)
            bench_cancel(tmp, image, engine, max(2, n // 2))
            bench_state_after_end(tmp, image, n)
    out = REPO / "benchmarks" / ("cluster_results.quick.json" if args.quick else "cluster_results.json")
    out.write_text(json.dumps(RESULTS, indent=2) + "\n")
    print(json.dumps(RESULTS, indent=2))


if __name__ == "__main__":
    main()
