"""The rendered Indexed Job's pod spec, run on the local Docker engine: one container per completion index with
the pod's env (the completion index resolved from its fieldRef, as the kubelet does), volumes (emptyDir
/dev/shm, the ConfigMap's files, hostPath) and securityContext; the headless Service's DNS name of pod 0 is
mapped to it with --add-host. Two pods started with `torchrun --nproc_per_node=1 --nnodes=2` and nothing
else rendezvous from PET_* alone and all_reduce with gloo. This is not a Kubernetes cluster: scheduling,
the Service's DNS and the Job controller are not exercised (none can run here)."""

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import docker
import pytest
from tao_bevfusion.backends.kubernetes.manifests import INDEX_ANNOTATION, K8sJob, Volume, render

from tests.rendezvous.image import CHECK_IN_IMAGE, ensure_image

pytestmark = pytest.mark.docker


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(container: dict[str, Any], index: int) -> dict[str, str]:
    out = {}
    for e in container["env"]:
        if "value" in e:
            out[e["name"]] = e["value"]
        else:
            assert e["valueFrom"]["fieldRef"]["fieldPath"] == INDEX_ANNOTATION
            out[e["name"]] = str(index)
    return out


def _run_pod(engine: docker.DockerClient, job: dict[str, Any], configmap: dict[str, Any], index: int,
             master_dns: str, tmp: Path) -> Any:
    pod = job["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    binds, shm = {}, None
    for m in c["volumeMounts"]:
        v = volumes[m["name"]]
        if "emptyDir" in v:
            shm = v["emptyDir"]["sizeLimit"].replace("Gi", "g").replace("Mi", "m")
        elif "configMap" in v:
            files = tmp / f"cm{index}"
            files.mkdir()
            for name, text in configmap["data"].items():
                (files / name).write_text(text)
            binds[str(files)] = {"bind": m["mountPath"], "mode": "ro"}
        else:
            binds[v["hostPath"]["path"]] = {"bind": m["mountPath"], "mode": "ro" if m.get("readOnly") else "rw"}
    sec = pod.get("securityContext", {})
    return engine.containers.run(
        c["image"], c["command"], detach=True, environment=_env(c, index), volumes=binds, shm_size=shm,
        user=f"{sec['runAsUser']}:{sec['runAsGroup']}", network_mode="host", extra_hosts={master_dns: "127.0.0.1"},
        labels={"tao-bevfusion.plugin": "tao-bevfusion", "tao-bevfusion.pod": f"{job['metadata']['name']}-{index}"})


def test_rendered_pods_rendezvous_from_pet_env(engine: docker.DockerClient, tmp_path: Path) -> None:
    image = ensure_image(engine)
    out = tmp_path / "out"
    out.mkdir(mode=0o777)
    os.chmod(out, 0o777)
    job = K8sJob(name="tao-rdzv", namespace="default", num_nodes=2, gpus_per_node=0, image=image,
                 command=["torchrun", "--nproc_per_node=1", "--nnodes=2", CHECK_IN_IMAGE],
                 env={"RDZV_OUT": "/out"}, shm_size="64Mi", master_port=_free_port(),
                 volumes=[Volume(name="out", mount_path="/out", host_path=str(out))],
                 spec_files={"train.yaml": "train:\n  num_nodes: 2\n"}, run_as_user=os.getuid(),
                 run_as_group=os.getgid())
    docs = {d["kind"]: d for d in render(job)}
    t0 = time.monotonic()
    pods = [_run_pod(engine, docs["Job"], docs["ConfigMap"], i, job.master_addr, tmp_path) for i in (1, 0)]
    try:
        codes = [p.wait(timeout=120)["StatusCode"] for p in pods]
        logs = [p.logs().decode(errors="replace")[-1500:] for p in pods]
    finally:
        for p in pods:
            p.remove(force=True)
    print(f"\n[timing] 2 rendered pods on docker: start -> both exited in {time.monotonic() - t0:.1f} s")
    assert codes == [0, 0], logs
    for rank in (0, 1):
        result = json.loads((out / f"rank{rank}.json").read_text())
        assert result["world_size"] == 2 and result["sum"] == result["expected"] == 1.0
        assert result["node_rank"] == str(rank)                               # GROUP_RANK from PET_NODE_RANK
        assert result["master"] == f"{job.master_addr}:{job.master_port}"     # pod 0's stable DNS name
