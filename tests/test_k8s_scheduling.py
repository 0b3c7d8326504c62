"""Kubernetes scheduling options (Kueue queue, priority class, scheduler, tolerations, labels) and the run's
deadline in the manifests (validated with `kubernetes-validate --strict`), their bad values, and why a
pending Job waits, against the API test double (tests/k8sfake.py; no live cluster can run here)."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from tao_bevfusion.backends.base import LaunchRequest
from tao_bevfusion.backends.kubernetes import backend as k8s
from tao_bevfusion.backends.kubernetes.scheduling import QUEUE_LABEL
from tao_bevfusion.backends.kubernetes.state import job_status
from tao_bevfusion.core.paths import Mount

from tests.k8sfake import Cluster

NS = "perception"
SCHED = {"namespace": NS, "queue": "gpu-team-a", "priority_class": "training-low", "scheduler_name": "volcano",
         "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
         "labels": {"team": "perception"}}


def _request(tmp: Path, options: dict[str, object], deadline: int | None = 7560) -> LaunchRequest:
    spec = tmp / "specs" / "train.yaml"
    spec.parent.mkdir(exist_ok=True)
    spec.write_text("train:\n  num_epochs: 2\n")
    return LaunchRequest(job_id="j0123456789abcdef", action="train", subtask="train", spec_host_path=str(spec),
                         spec_container_path="/specs/train.yaml", results_dir=str(tmp),
                         results_container_dir="/results",
                         home_dir="/results/.home", cache_dir="/results/.cache",
                         mounts=[Mount(host=str(tmp), container="/results", mode="rw")], image="tao:5.5",
                         gpus_per_node=4, num_nodes=2, log_path=str(tmp / "log"), options=options,
                         deadline_seconds=deadline)


def _plan(tmp: Path, options: dict[str, object], deadline: int | None = 7560) -> k8s.KubernetesPlan:
    opts = k8s.KubernetesOptions.model_validate(options)
    return k8s.KubernetesBackend().plan(_request(tmp, opts.model_dump(), deadline))


def test_queue_priority_scheduler_tolerations_and_deadline_land_in_the_job(tmp_path: Path) -> None:
    plan = _plan(tmp_path, SCHED)
    job = next(d for d in plan.manifests if d["kind"] == "Job")
    assert job["metadata"]["labels"][QUEUE_LABEL] == "gpu-team-a" and job["metadata"]["labels"]["team"] == "perception"
    assert job["spec"]["activeDeadlineSeconds"] == 7560
    pod = job["spec"]["template"]["spec"]
    assert job["spec"]["template"]["metadata"]["labels"][QUEUE_LABEL] == "gpu-team-a"
    assert pod["priorityClassName"] == "training-low" and pod["schedulerName"] == "volcano"
    assert pod["tolerations"] == [{"operator": "Exists", "key": "nvidia.com/gpu", "effect": "NoSchedule"}]
    plain = next(d for d in _plan(tmp_path, {"namespace": NS}, None).manifests if d["kind"] == "Job")
    assert "activeDeadlineSeconds" not in plain["spec"] and QUEUE_LABEL not in plain["metadata"]["labels"]
    exe = shutil.which("kubernetes-validate")
    if exe is None:
        pytest.skip("kubernetes-validate is not installed (dev extra)")
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump_all(plan.manifests))
    out = subprocess.run([exe, "--strict", str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize(("bad", "field"), [
    ({"queue": "Team_A"}, "queue"), ({"priority_class": "high priority"}, "priority_class"),
    ({"scheduler_name": "-volcano"}, "scheduler_name"), ({"tolerations": [{"effect": "Sometimes"}]}, "tolerations"),
    ({"labels": {QUEUE_LABEL: "x"}}, "labels")])
def test_bad_scheduling_values_name_the_field(bad: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        k8s.KubernetesOptions.model_validate({"namespace": NS, **bad})
    assert err.value.errors()[0]["loc"][0] == field


def test_pending_job_says_kueue_has_not_admitted_it_then_why_pods_wait(tmp_path: Path) -> None:
    cluster = Cluster(namespaces={"default", NS}, kueue=True)
    api = cluster.api()
    plan = _plan(tmp_path, SCHED)
    for doc in plan.manifests:
        cluster.create(doc["kind"], NS, doc)
    status = job_status(api, NS, plan.name)
    assert status.state == "queued" and status.error and "Kueue: not admitted" in status.error
    assert "gpu-team-a" in status.error
    cluster.admit(NS, plan.name)
    cluster.unschedulable(NS, plan.name, "0/2 nodes are available: 2 Insufficient nvidia.com/gpu.")
    status = job_status(api, NS, plan.name)
    assert status.state == "queued" and status.error and "unschedulable" in status.error
    assert "Insufficient nvidia.com/gpu" in status.error
