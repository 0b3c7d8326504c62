"""The kubernetes backend through run_action against a recording test double of the API (tests/k8sfake.py,
answering with the official client's models and ApiException). NOT tested against a live cluster: no API
server can run here. The manifests it plans are validated with `kubernetes-validate --strict`."""

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from tao_bevfusion.backends.kubernetes import backend as k8s
from tao_bevfusion.core.errors import InputError
from tao_bevfusion.jobs.context import app_context
from tao_bevfusion.jobs.launch import RunActionInput
from tao_bevfusion.service.jobs import cancel_job, get_job
from tao_bevfusion.service.run import run_action

from tests.conftest import copy_sample
from tests.k8sfake import Cluster, api_exception

pytestmark = pytest.mark.docker   # the dataset is converted by the docker backend first
NS = "perception"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Cluster:
    cluster = Cluster(namespaces={"default", NS}, claims={"kitti": "Bound"})
    monkeypatch.setattr(k8s, "API_FACTORY", cluster.api)
    return cluster


@pytest.fixture
def kitti_converted(docker_ws: Path) -> Path:
    root = copy_sample(docker_ws / "kitti")
    out = run_action(RunActionInput(action="dataset_convert", data_root=str(root), gpus=[]))
    assert out.job_id
    end = time.monotonic() + 60
    while get_job(out.job_id).state in ("pending", "running") and time.monotonic() < end:
        time.sleep(0.3)
    assert get_job(out.job_id).state == "succeeded"
    return root


def _train(root: Path, **kw: object):
    fields: dict[str, object] = dict(action="train", data_root=str(root), backend="kubernetes", num_nodes=2,
                                     num_gpus=4, automl_policy="off", overrides={"num_epochs": 2, "batch_size": 1},
                                     backend_options={"namespace": NS, "claims": {"/data": "kitti"}})
    fields.update(kw)
    return run_action(RunActionInput.model_validate(fields))


def test_plan_is_the_manifests_and_validates_strict(kitti_converted: Path, fake: Cluster, tmp_path: Path) -> None:
    dry = _train(kitti_converted, dry_run=True)
    assert dry.state == "planned" and dry.plan is not None and fake.names()[:1] == ["read_namespace"]
    plan = dry.plan.model_dump()
    docs = list(yaml.safe_load_all(plan["yaml"]))
    assert docs == plan["manifests"] and [d["kind"] for d in docs] == ["ConfigMap", "Service", "Job"]
    job = docs[2]
    pod = job["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["command"] == ["bevfusion", "train", "-e", dry.plan.command[-1]]
    assert c["image"] == app_context().settings.image
    assert c["resources"]["limits"] == c["resources"]["requests"] == {"nvidia.com/gpu": 4}
    volumes = {v["name"]: v for v in pod["volumes"]}
    data = next(v for v in volumes.values() if v.get("persistentVolumeClaim"))
    assert data["persistentVolumeClaim"] == {"claimName": "kitti", "readOnly": True}
    assert any(v.get("hostPath") for v in volumes.values())          # results: not in claims -> hostPath
    spec_name = dry.plan.command[-1].rsplit("/", 1)[1]
    assert "num_nodes: 2" in docs[0]["data"][spec_name]            # the spec itself, from the ConfigMap
    assert {ch.name for ch in dry.plan.preflight} >= {"context", "rbac", "gpu_capacity", "host_paths"}
    exe = shutil.which("kubernetes-validate")
    if exe is None:
        pytest.skip("kubernetes-validate is not installed (dev extra)")
    path = tmp_path / "plan.yaml"
    path.write_text(plan["yaml"])
    t0 = time.monotonic()
    out = subprocess.run([exe, "--strict", str(path)], capture_output=True, text=True, timeout=120)
    print(f"\n[timing] kubernetes-validate --strict of the planned manifests: {time.monotonic() - t0:.2f} s")
    assert out.returncode == 0, out.stdout + out.stderr


def test_submit_poll_logs_and_verdict(kitti_converted: Path, fake: Cluster) -> None:
    out = _train(kitti_converted)
    assert out.job_id and out.state == "pending"  # the API server only queues the Job
    name = f"tao-{out.job_id}"
    assert [n for n in fake.names() if n.startswith("create_namespaced")] == [
        "create_namespaced_config_map", "create_namespaced_service", "create_namespaced_job"]
    assert get_job(out.job_id).state == "pending"                    # no pods yet: queued, reported as pending
    fake.run_pods(NS, name)
    fake.logs[f"{name}-0-abcde"] = "Epoch(train)  [1][  1/1]  lr: 1e-4  loss: 1.0\n"
    fake.logs[f"{name}-1-abcde"] = "NODE ONE ONLY\n"
    assert get_job(out.job_id).state == "running"
    fake.logs[f"{name}-0-abcde"] += "[2026-12-02 05:00:00,000 - TAO Toolkit - root - WARNING] Execution status: FAIL\n"
    fake.finish(NS, name, [0, 0])
    s = get_job(out.job_id)
    assert s.state == "failed" and s.verdict.footer == "FAIL"        # the verdict reads rank 0's footer + artifacts
    log = app_context().store.get(out.job_id).files(app_context().settings.home).log.read_text()
    assert log.count("Epoch(train)") == 1 and "NODE ONE ONLY" not in log   # rank 0's pod only, no duplicates
    assert ("Service", NS, name) not in fake.objects and ("Job", NS, name) in fake.objects   # cleanup


def test_cancel_deletes_with_foreground_propagation(kitti_converted: Path, fake: Cluster) -> None:
    out = _train(kitti_converted)
    assert out.job_id
    name = f"tao-{out.job_id}"
    fake.run_pods(NS, name)
    res = cancel_job(out.job_id)
    deletes = [(n, kw) for n, kw in fake.calls if n.startswith("delete_namespaced")]
    assert deletes[0] == ("delete_namespaced_job", {"name": name, "namespace": NS, "propagation_policy": "Foreground"})
    assert {n for n, _ in deletes} >= {"delete_namespaced_service", "delete_namespaced_config_map"}
    assert res.state == "canceled" and not fake.pods and not fake.objects


def test_refused_submit_rolls_back_and_reports_the_api_message(kitti_converted: Path, fake: Cluster) -> None:
    fake.refuse["Job"] = api_exception(403, "Forbidden", 'jobs.batch is forbidden: User "ci" cannot create '
                                       'resource "jobs" in API group "batch" in the namespace "perception"')
    with pytest.raises(InputError) as err:
        _train(kitti_converted)
    p = err.value.problems[0]
    assert "HTTP 403" in p.message and 'cannot create resource "jobs"' in p.message and "RBAC" in p.fix
    assert fake.objects == {}                                        # ConfigMap and Service deleted again


@pytest.mark.parametrize(("change", "check", "text"), [
    ({"namespaces": {"default"}}, "namespace", "does not exist"),
    ({"allowed": False}, "rbac", "may not create"),
    ({"gpus_per_node": [4, 2]}, "gpu_capacity", "1 node(s) offer"),
    ({"claims": {"kitti": "Pending"}}, "pvc:kitti", "is Pending"),
])
def test_preflight_names_the_fix(kitti_converted: Path, fake: Cluster, change: dict[str, object], check: str,
                                 text: str) -> None:
    for key, value in change.items():
        setattr(fake, key, value)
    with pytest.raises(InputError) as err:
        _train(kitti_converted)
    found = [p for p in err.value.problems if p.path == f"preflight.{check}"]
    assert found and text in found[0].message and found[0].fix, err.value.problems
    assert not [n for n in fake.names() if n.startswith("create_namespaced")]


def test_a_spec_with_a_key_ships_in_a_secret_never_in_the_plan(kitti_converted: Path, fake: Cluster) -> None:
    key = "nvidia_tlt_key_0123"
    out = _train(kitti_converted, encryption_key=key)
    assert out.job_id and out.plan is not None
    plan = out.plan.model_dump()
    assert key not in json.dumps(plan) and key not in json.dumps(app_context().store.get(out.job_id).plan)
    docs = {d["kind"]: d for d in plan["manifests"]}
    assert "ConfigMap" not in docs and "***" in next(iter(docs["Secret"]["stringData"].values()))
    vols = docs["Job"]["spec"]["template"]["spec"]["volumes"]
    assert {"name": "spec", "secret": {"secretName": f"tao-{out.job_id}-spec"}} in vols
    (sent,) = [kw["body"] for n, kw in fake.calls if n == "create_namespaced_secret"]
    assert key in next(iter(sent["stringData"].values()))          # the pods read the real spec
    cancel_job(out.job_id)
    assert ("Secret", NS, f"tao-{out.job_id}-spec") not in fake.objects


def test_an_evaluate_reads_its_checkpoint_from_a_private_host_path(kitti_converted: Path, fake: Cluster) -> None:
    """Issue 17, High 1 on Kubernetes: the parent's checkpoint reaches the pod through the job's own inputs
    folder (hostPath, read-only), never the parent's results folder that its container could rewrite."""
    from tests.attacks.helpers import FAST, finish, launch

    trained = launch("train", kitti_converted, overrides=FAST)
    assert finish(trained.job_id).state == "succeeded"
    parent_results = Path(app_context().store.get(trained.job_id).results_dir)
    out = run_action(RunActionInput.model_validate({
        "action": "evaluate", "data_root": str(kitti_converted), "parent_job_id": trained.job_id,
        "backend": "kubernetes", "num_gpus": 1, "backend_options": {"namespace": NS, "claims": {"/data": "kitti"}}}))
    assert out.job_id
    pod = fake.objects[("Job", NS, f"tao-{out.job_id}")]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
    model = mounts["/inputs/model"]
    private = Path(volumes[model["name"]]["hostPath"]["path"])
    assert private == app_context().settings.home / "jobs" / out.job_id / "inputs" / "model"
    assert model.get("readOnly") is True and oct(private.stat().st_mode & 0o777) == "0o700"
    (linked,) = private.iterdir()  # the chosen checkpoint only, none of the parent's other files
    (original,) = [p for p in parent_results.rglob(linked.name)]
    assert linked.read_bytes() == original.read_bytes()
    host_paths = [Path(v["hostPath"]["path"]) for v in volumes.values() if "hostPath" in v]
    assert not any(p == parent_results or parent_results in p.parents for p in host_paths), host_paths
