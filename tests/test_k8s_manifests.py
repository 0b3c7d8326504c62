"""Kubernetes manifests: golden YAML, `kubernetes-validate --strict` against the official schemas, and the
semantic rules a schema cannot see. Not tested against a live cluster (none can run here)."""

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from tao_bevfusion.backends.kubernetes.manifests import INDEX_ANNOTATION, K8sJob, Volume, render, render_yaml

GOLDEN = Path(__file__).resolve().parent / "golden" / "k8s_indexed_job.yaml"
UPDATE = os.environ.get("TAO_BEVFUSION_UPDATE_GOLDEN") == "1"


def _job(**over: object) -> K8sJob:
    fields: dict[str, object] = dict(
        name="tao-train-1a2b", namespace="perception", num_nodes=2, gpus_per_node=4,
        image="nvcr.io/nvidia/tao/tao-toolkit:5.5.0-pyt",
        command=["bevfusion", "train", "-e", "/specs/train.yaml", "results_dir=/results/train"],
        env={"TAO_BEVFUSION_JOB": "1a2b"}, cpu="32", memory="200Gi", shm_size="32Gi",
        volumes=[Volume(name="data", mount_path="/data", read_only=True, claim="kitti-ro"),
                 Volume(name="results", mount_path="/results", claim="results-rwx")],
        spec_files={"train.yaml": "train:\n  num_gpus: 4\n  num_nodes: 2\n"},
        run_as_user=1000, run_as_group=1000, labels={"team": "perception"})
    fields.update(over)
    return K8sJob.model_validate(fields)


def _by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in docs}


def test_golden_and_strict_schema_validation(tmp_path: Path) -> None:
    text = render_yaml(_job())
    if UPDATE:
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()
    exe = shutil.which("kubernetes-validate")
    if exe is None:
        pytest.skip("kubernetes-validate is not installed (it is in the dev extra: pip install -e '.[dev]')")
    hostpath = tmp_path / "hostpath.yaml"
    hostpath.write_text(render_yaml(_job(volumes=[Volume(name="data", mount_path="/data", host_path="/srv/kitti")],
                                         gpus_per_node=0, spec_files={}, cpu=None, memory=None)))
    for path in (GOLDEN, hostpath):
        out = subprocess.run([exe, "--strict", str(path)], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr


def test_strict_validation_catches_a_typo(tmp_path: Path) -> None:
    exe = shutil.which("kubernetes-validate")
    if exe is None:
        pytest.skip("kubernetes-validate is not installed (it is in the dev extra: pip install -e '.[dev]')")
    docs = render(_job())
    _by_kind(docs)["Job"]["spec"]["completionsMode"] = "Indexed"    # typo of completionMode
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump_all(docs))
    out = subprocess.run([exe, "--strict", str(bad)], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "completionsMode" in out.stdout + out.stderr


def test_semantics_the_schema_cannot_see() -> None:
    docs = _by_kind(render(_job()))
    job, svc, cm = docs["Job"], docs["Service"], docs["ConfigMap"]
    spec = job["spec"]
    assert spec["completions"] == spec["parallelism"] == 2 and spec["completionMode"] == "Indexed"
    assert spec["backoffLimit"] == 0
    assert {r["action"] for r in spec["podFailurePolicy"]["rules"]} == {"FailJob"}
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (c,) = pod["containers"]
    assert c["image"] == "nvcr.io/nvidia/tao/tao-toolkit:5.5.0-pyt"
    assert c["resources"]["limits"] == c["resources"]["requests"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 4
    env = {e["name"]: e for e in c["env"]}
    for rank in ("PET_NODE_RANK", "NODE_RANK"):
        assert env[rank]["valueFrom"]["fieldRef"]["fieldPath"] == INDEX_ANNOTATION
    # Pod 0's stable name: <hostname = job-0>.<subdomain = the headless Service>.
    assert env["PET_MASTER_ADDR"]["value"] == env["MASTER_ADDR"]["value"] == f"tao-train-1a2b-0.{pod['subdomain']}"
    assert pod["subdomain"] == svc["metadata"]["name"]
    assert {k: env[k]["value"] for k in ("PET_NNODES", "WORLD_SIZE", "PET_MASTER_PORT", "NUM_GPU_PER_NODE")} == \
        {"PET_NNODES": "2", "WORLD_SIZE": "2", "PET_MASTER_PORT": "29500", "NUM_GPU_PER_NODE": "4"}
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"] is True
    labels = spec["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items() and labels["team"] == "perception"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "32Gi"}
    assert volumes["spec"]["configMap"]["name"] == cm["metadata"]["name"]
    assert volumes["data"]["persistentVolumeClaim"] == {"claimName": "kitti-ro", "readOnly": True}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/dev/shm"]["name"] == "dshm" and mounts["/specs"]["readOnly"] is True
    assert pod["securityContext"] == {"runAsUser": 1000, "runAsGroup": 1000}
    assert cm["data"]["train.yaml"].startswith("train:")


def test_no_gpus_no_resources_no_configmap() -> None:
    docs = render(_job(gpus_per_node=0, cpu=None, memory=None, spec_files={}))
    assert [d["kind"] for d in docs] == ["Service", "Job"]
    (c,) = docs[1]["spec"]["template"]["spec"]["containers"]
    assert "resources" not in c


@pytest.mark.parametrize("over", [
    {"env": {"PET_MASTER_ADDR": "x"}}, {"env": {"WORLD_SIZE": "8"}}, {"num_nodes": 0}, {"num_nodes": 10_000},
    {"name": "Tao_Train"}, {"name": "x" * 53}, {"namespace": "Bad NS"}, {"memory": "lots"},
    {"labels": {"bad key!": "v"}}, {"volumes": [Volume(name="dshm", mount_path="/x", claim="c")]},
    {"command": []},
])
def test_refused(over: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        _job(**over)


def test_volume_needs_exactly_one_source() -> None:
    with pytest.raises(ValidationError):
        Volume(name="data", mount_path="/data")
    with pytest.raises(ValidationError):
        Volume(name="data", mount_path="/data", claim="c", host_path="/srv")
