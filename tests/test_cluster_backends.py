"""Cluster backends without a scheduler: registration, options (site defaults from the environment), the plan as
the printable script/manifests, multi-node spec consistency and its refusals."""

import dataclasses
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from tao_bevfusion.backends.base import LaunchRequest
from tao_bevfusion.backends.kubernetes.backend import KubernetesBackend, KubernetesOptions
from tao_bevfusion.backends.registry import backend_class, multi_node_backends, names
from tao_bevfusion.backends.slurm.backend import SlurmBackend, SlurmOptions
from tao_bevfusion.core.errors import InputError
from tao_bevfusion.core.paths import Mount
from tao_bevfusion.core.settings import Settings
from tao_bevfusion.jobs.launch import RunActionInput
from tao_bevfusion.service.specs import build_spec
from tao_bevfusion.specbuild.build import BuildSpecInput


def _request(tmp: Path, **over: object) -> LaunchRequest:
    spec = tmp / "specs" / "train.yaml"
    spec.parent.mkdir(parents=True, exist_ok=True)
    spec.write_text("train:\n  num_nodes: 2\n")
    fields: dict[str, object] = dict(
        job_id="j0123456789abcdef", action="train", subtask="train", spec_host_path=str(spec),
        spec_container_path="/specs/train.yaml", results_dir=str(tmp / "res"), results_container_dir="/results/res",
        home_dir="/results/res/.home", cache_dir="/results/res/.cache",
        image="nvcr.io/nvidia/tao/tao-toolkit:5.5.0-pyt",
        mounts=[Mount(host=str(tmp / "kitti"), container="/data", mode="ro"),
                Mount(host=str(tmp / "res"), container="/results/res", mode="rw"),
                Mount(host=str(spec.parent), container="/specs", mode="ro")],
        gpus_per_node=4, num_nodes=2, env={"NCCL_DEBUG": "INFO"}, log_path=str(tmp / "jobs" / "j0" / "job.log"))
    fields.update(over)
    return LaunchRequest.model_validate(fields)


def test_registered_with_capabilities() -> None:
    assert {"slurm", "kubernetes", "docker", "local"} <= set(names())
    assert multi_node_backends() == ["kubernetes", "slurm"]
    for name in ("slurm", "kubernetes"):
        caps = backend_class(name).capabilities
        assert caps.multi_node and caps.maps_paths_into_container and not caps.gpu_pinning
    # sbatch only queues a job: recorded pending until a poll sees it run; a started container is running
    assert backend_class("slurm").capabilities.state_after_submit == "pending"
    assert backend_class("docker").capabilities.state_after_submit == "running"


def test_slurm_log_sync_keeps_each_node_in_order_and_interleaves_per_sync(tmp_path: Path) -> None:
    log_dir, log = tmp_path / "slurm", tmp_path / "job" / "job.log"
    log_dir.mkdir()
    node0, node1 = log_dir / "tao-j1-7-node0.log", log_dir / "tao-j1-7-node1.log"
    node0.write_bytes(b"torchrun on node 0")  # no whole line yet: held back
    node1.write_bytes(b"torchrun on node 1\n")
    handle = f"slurm:7:tao-j1:{log_dir}"
    SlurmBackend().sync_logs(handle, log)
    assert log.read_bytes() == b"[node 1] torchrun on node 1\n"  # node 1 first: no node order is promised
    with node0.open("ab") as fh:
        fh.write(b" ...\rEpoch(train) [1]\n")
    with node1.open("ab") as fh:
        fh.write(b"Epoch(train) [1]\n")
    (log_dir / "tao-j1-7.batch.log").write_bytes(b"srun: done\n")
    SlurmBackend().sync_logs(handle, log)
    SlurmBackend().sync_logs(handle, log)  # nothing new: nothing appended
    assert log.read_bytes() == (b"[node 1] torchrun on node 1\n" b"torchrun on node 0 ...\rEpoch(train) [1]\n"
                                b"[node 1] Epoch(train) [1]\n[batch] srun: done\n")  # node 0 first within a sync


def test_slurm_plan_is_the_script(tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAO_BEVFUSION_SLURM_PARTITION", "gpu")
    monkeypatch.setenv("TAO_BEVFUSION_SLURM_ACCOUNT", "perception")
    settings = dataclasses.replace(settings, backend_defaults=Settings.from_env().backend_defaults)  # read once
    opts = SlurmOptions.from_user({"time_limit": "04:00:00", "account": "other"}, settings)
    assert (opts.partition, opts.account, opts.runtime) == ("gpu", "other", "pyxis")   # caller's value wins
    plan = SlurmBackend().plan(_request(tmp_path, options=opts.model_dump()))
    s = plan.script
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1", "#SBATCH --gres=gpu:4",
                 "#SBATCH --partition=gpu", "#SBATCH --account=other", "#SBATCH --time=04:00:00",
                 "srun --export=ALL --kill-on-bad-exit=1",
                 "--container-image='nvcr.io#nvidia/tao/tao-toolkit:5.5.0-pyt'",
                 "export PET_NNODES=2", "NUM_GPU_PER_NODE=4", "bevfusion train -e /specs/train.yaml",
                 "export NCCL_DEBUG=INFO", "export TELEMETRY_OPT_OUT=yes"):
        assert line in s, line
    assert plan.equivalent_cli == ["sbatch", "--parsable", plan.script_path] and plan.script_path.endswith(".sbatch")
    assert "/data:ro" in s and plan.log_dir.startswith(str(tmp_path))
    none = SlurmBackend().plan(_request(tmp_path, gpus=[], options={"runtime": "docker"}))
    assert "--gres" not in none.script and "--gpus" not in none.script and "--network host" in none.script


@pytest.mark.parametrize("bad", [{"partition": "gpu;rm -rf"}, {"mem": "lots"}, {"runtime": "podman"},
                                 {"log_dir": "relative"}, {"surprise": 1}])
def test_slurm_options_refused(bad: dict[str, object], settings: Settings) -> None:
    with pytest.raises(ValidationError):
        SlurmOptions.from_user(bad, settings)


def test_kubernetes_plan_is_the_manifests(tmp_path: Path, settings: Settings) -> None:
    opts = KubernetesOptions.from_user({"namespace": "perception", "claims": {"/data": "kitti"}}, settings)
    plan = KubernetesBackend().plan(_request(tmp_path, options=opts.model_dump()))
    docs = list(yaml.safe_load_all(plan.yaml))
    assert docs == plan.manifests and [d["kind"] for d in docs] == ["ConfigMap", "Service", "Job"]
    assert docs[0]["data"] == {"train.yaml": "train:\n  num_nodes: 2\n"}
    pod = docs[2]["spec"]["template"]["spec"]
    mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert mounts == {"/dev/shm", "/specs", "/data", "/results/res"}   # the spec dir comes from the ConfigMap
    sources = {v["name"]: v for v in pod["volumes"]}
    assert sum("hostPath" in v for v in sources.values()) == 1 and docs[2]["spec"]["completions"] == 2


def test_build_spec_sets_nodes_together_and_refuses(kitti: Path) -> None:
    built = build_spec(BuildSpecInput(action="train", data_root=str(kitti), backend="slurm", num_nodes=2, num_gpus=4))
    text = Path(built.spec_path).read_text()
    spec = yaml.safe_load(text)
    assert spec["train"]["num_nodes"] == 2 and spec["train"]["num_gpus"] == 4
    assert spec["train"]["gpu_ids"] == [0, 1, 2, 3]
    with pytest.raises(InputError) as one:
        build_spec(BuildSpecInput(action="train", data_root=str(kitti), backend="slurm", num_nodes=2, num_gpus=1))
    assert "§9.2" in one.value.problems[0].message
    with pytest.raises(InputError) as dock:
        build_spec(BuildSpecInput(action="train", data_root=str(kitti), backend="docker", num_nodes=2, num_gpus=2))
    assert "kubernetes" in dock.value.problems[0].fix and "slurm" in dock.value.problems[0].fix
    for nodes in (0, 65):
        with pytest.raises(ValidationError):
            RunActionInput(action="train", data_root=str(kitti), num_nodes=nodes)
