"""A test double of the Kubernetes API the backend uses, answering with the official client's own model classes
(V1Job, V1PodList, V1Status ...) and its ApiException (status + JSON Status body), and recording every call.

Only what the API server would do for these calls is modelled: objects by namespace and name, 404 NotFound,
409 AlreadyExists, label-selector listing, foreground deletion removing the Job's pods. Tests drive the
Job's lifecycle with `run_pods` / `finish`.
"""

import datetime
import json
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client import (
    V1ConfigMap,
    V1ContainerState,
    V1ContainerStateTerminated,
    V1ContainerStatus,
    V1Job,
    V1JobCondition,
    V1JobList,
    V1JobSpec,
    V1JobStatus,
    V1Namespace,
    V1Node,
    V1NodeList,
    V1NodeStatus,
    V1ObjectMeta,
    V1PersistentVolumeClaim,
    V1PersistentVolumeClaimStatus,
    V1Pod,
    V1PodCondition,
    V1PodList,
    V1PodStatus,
    V1PodTemplateSpec,
    V1Secret,
    V1SelfSubjectAccessReview,
    V1Service,
    V1Status,
    V1SubjectAccessReviewStatus,
)
from kubernetes.client.exceptions import ApiException
from tao_bevfusion.backends.kubernetes.backend import Api

INDEX_KEY = "batch.kubernetes.io/job-completion-index"
START = datetime.datetime(2026, 12, 2, 5, 0, 0, tzinfo=datetime.UTC)


def api_exception(status: int, reason: str, message: str) -> ApiException:
    exc = ApiException(status=status, reason=reason)
    exc.body = json.dumps({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                           "message": message, "reason": reason.replace(" ", ""), "code": status})
    return exc


@dataclass
class Cluster:
    namespaces: set[str] = field(default_factory=lambda: {"default"})
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)  # (kind, ns, name) -> body
    pods: dict[tuple[str, str], V1Pod] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)
    conditions: dict[tuple[str, str], list[V1JobCondition]] = field(default_factory=dict)
    allowed: bool = True
    gpus_per_node: list[int] = field(default_factory=lambda: [4, 4])
    claims: dict[str, str] = field(default_factory=dict)  # name -> phase
    refuse: dict[str, ApiException] = field(default_factory=dict)  # kind -> error on create
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    kueue: bool = False  # Kueue installed: its webhook suspends a Job that names a queue until it is admitted

    def api(self, context: str | None = None) -> Api:
        self.calls.append(("load_config", {"context": context}))
        return Api(_Core(self), _Batch(self), _Auth(self))

    def record(self, method: str, **kwargs: Any) -> None:
        self.calls.append((method, kwargs))

    def names(self) -> list[str]:
        return [c[0] for c in self.calls if c[0] != "load_config"]

    def create(self, kind: str, namespace: str, body: dict[str, Any]) -> None:
        if namespace not in self.namespaces:
            raise api_exception(404, "Not Found", f'namespaces "{namespace}" not found')
        if kind in self.refuse:
            raise self.refuse[kind]
        key = (kind, namespace, body["metadata"]["name"])
        if key in self.objects:
            raise api_exception(409, "Conflict", f'{kind.lower()}s "{key[2]}" already exists')
        if kind == "Job" and self.kueue and "kueue.x-k8s.io/queue-name" in body["metadata"].get("labels", {}):
            body = {**body, "spec": {**body["spec"], "suspend": True}}
        self.objects[key] = body

    def admit(self, namespace: str, name: str) -> None:
        """Kueue admits the Job: unsuspended."""
        body = self.objects[("Job", namespace, name)]
        body["spec"]["suspend"] = False

    def unschedulable(self, namespace: str, name: str, message: str) -> None:
        """The Job's pods exist but no node can take them (the scheduler's condition on each pod)."""
        self.run_pods(namespace, name, phase="Pending")
        for (ns, _), pod in self.pods.items():
            if ns == namespace and pod.metadata.labels.get("job-name") == name:
                pod.status.conditions = [V1PodCondition(type="PodScheduled", status="False",
                                                        reason="Unschedulable", message=message)]

    def delete(self, kind: str, namespace: str, name: str) -> V1Status:
        if (kind, namespace, name) not in self.objects:
            raise api_exception(404, "Not Found", f'{kind.lower()}s "{name}" not found')
        del self.objects[(kind, namespace, name)]
        if kind == "Job":
            for key in [k for k, p in self.pods.items() if p.metadata.labels.get("job-name") == name]:
                del self.pods[key]
        return V1Status(status="Success")

    def run_pods(self, namespace: str, name: str, phase: str = "Running") -> None:
        job = self.objects[("Job", namespace, name)]
        template = job["spec"]["template"]
        for i in range(job["spec"]["completions"]):
            pod = V1Pod(metadata=V1ObjectMeta(name=f"{name}-{i}-abcde", namespace=namespace,
                                              labels={**template["metadata"]["labels"], "job-name": name},
                                              annotations={INDEX_KEY: str(i)},
                                              creation_timestamp=START + datetime.timedelta(seconds=i)),
                        status=V1PodStatus(phase=phase, container_statuses=[V1ContainerStatus(
                            name="tao", image=template["spec"]["containers"][0]["image"], image_id="", ready=True,
                            restart_count=0, state=V1ContainerState())]))
            self.pods[(namespace, pod.metadata.name)] = pod

    def finish(self, namespace: str, name: str, codes: list[int], reason: str = "Completed") -> None:
        for (ns, _), pod in self.pods.items():
            if ns == namespace and pod.metadata.labels.get("job-name") == name:
                i = int(pod.metadata.annotations[INDEX_KEY])
                pod.status.phase = "Succeeded" if codes[i] == 0 else "Failed"
                pod.status.container_statuses[0].state = V1ContainerState(terminated=V1ContainerStateTerminated(
                    exit_code=codes[i], reason=reason if codes[i] else "Completed"))
        kind = "Complete" if not any(codes) else "Failed"
        self.conditions[(namespace, name)] = [V1JobCondition(
            type=kind, status="True", reason=None if kind == "Complete" else "PodFailurePolicy",
            message=None if kind == "Complete" else "Container tao for pod exited with a non-zero exit code")]


class _Core:
    def __init__(self, c: Cluster) -> None:
        self.c = c

    def read_namespace(self, name: str) -> V1Namespace:
        self.c.record("read_namespace", name=name)
        if name not in self.c.namespaces:
            raise api_exception(404, "Not Found", f'namespaces "{name}" not found')
        return V1Namespace(metadata=V1ObjectMeta(name=name))

    def create_namespaced_config_map(self, namespace: str, body: dict[str, Any]) -> V1ConfigMap:
        self.c.record("create_namespaced_config_map", namespace=namespace, body=body)
        self.c.create("ConfigMap", namespace, body)
        return V1ConfigMap(metadata=V1ObjectMeta(name=body["metadata"]["name"]), data=body.get("data"))

    def create_namespaced_secret(self, namespace: str, body: dict[str, Any]) -> V1Secret:
        self.c.record("create_namespaced_secret", namespace=namespace, body=body)
        self.c.create("Secret", namespace, body)
        return V1Secret(metadata=V1ObjectMeta(name=body["metadata"]["name"]), type=body.get("type"))

    def delete_namespaced_secret(self, name: str, namespace: str, **kw: Any) -> V1Status:
        self.c.record("delete_namespaced_secret", name=name, namespace=namespace, **kw)
        return self.c.delete("Secret", namespace, name)

    def create_namespaced_service(self, namespace: str, body: dict[str, Any]) -> V1Service:
        self.c.record("create_namespaced_service", namespace=namespace, body=body)
        self.c.create("Service", namespace, body)
        return V1Service(metadata=V1ObjectMeta(name=body["metadata"]["name"]))

    def delete_namespaced_service(self, name: str, namespace: str, **kw: Any) -> V1Status:
        self.c.record("delete_namespaced_service", name=name, namespace=namespace, **kw)
        return self.c.delete("Service", namespace, name)

    def delete_namespaced_config_map(self, name: str, namespace: str, **kw: Any) -> V1Status:
        self.c.record("delete_namespaced_config_map", name=name, namespace=namespace, **kw)
        return self.c.delete("ConfigMap", namespace, name)

    def list_namespaced_pod(self, namespace: str, label_selector: str = "") -> V1PodList:
        self.c.record("list_namespaced_pod", namespace=namespace, label_selector=label_selector)
        key, _, value = label_selector.partition("=")
        items = [p for (ns, _), p in self.c.pods.items() if ns == namespace and p.metadata.labels.get(key) == value]
        return V1PodList(items=items)

    def read_namespaced_pod_log(self, name: str, namespace: str, container: str | None = None) -> str:
        self.c.record("read_namespaced_pod_log", name=name, namespace=namespace, container=container)
        if (namespace, name) not in self.c.pods:
            raise api_exception(404, "Not Found", f'pods "{name}" not found')
        return self.c.logs.get(name, "")

    def list_node(self) -> V1NodeList:
        self.c.record("list_node")
        return V1NodeList(items=[V1Node(metadata=V1ObjectMeta(name=f"gpu{i}"),
                                        status=V1NodeStatus(allocatable={"cpu": "64", "nvidia.com/gpu": str(g)}))
                                 for i, g in enumerate(self.c.gpus_per_node)])

    def read_namespaced_persistent_volume_claim(self, name: str, namespace: str) -> V1PersistentVolumeClaim:
        self.c.record("read_namespaced_persistent_volume_claim", name=name, namespace=namespace)
        if name not in self.c.claims:
            raise api_exception(404, "Not Found", f'persistentvolumeclaims "{name}" not found')
        return V1PersistentVolumeClaim(metadata=V1ObjectMeta(name=name),
                                       status=V1PersistentVolumeClaimStatus(phase=self.c.claims[name]))


class _Batch:
    def __init__(self, c: Cluster) -> None:
        self.c = c

    def create_namespaced_job(self, namespace: str, body: dict[str, Any]) -> V1Job:
        self.c.record("create_namespaced_job", namespace=namespace, body=body)
        self.c.create("Job", namespace, body)
        return V1Job(metadata=V1ObjectMeta(name=body["metadata"]["name"]))

    def read_namespaced_job(self, name: str, namespace: str) -> V1Job:
        self.c.record("read_namespaced_job", name=name, namespace=namespace)
        body = self.c.objects.get(("Job", namespace, name))
        if body is None:
            raise api_exception(404, "Not Found", f'jobs.batch "{name}" not found')
        spec = body["spec"]
        active = sum(1 for (ns, _), p in self.c.pods.items()
                     if ns == namespace and p.metadata.labels.get("job-name") == name and p.status.phase == "Running")
        return V1Job(metadata=V1ObjectMeta(name=name, namespace=namespace, labels=body["metadata"].get("labels")),
                     spec=V1JobSpec(completions=spec["completions"], parallelism=spec["parallelism"],
                                    suspend=spec.get("suspend"),
                                    completion_mode=spec["completionMode"], template=V1PodTemplateSpec(
                                        metadata=V1ObjectMeta(labels=spec["template"]["metadata"]["labels"]))),
                     status=V1JobStatus(active=active or None, conditions=self.c.conditions.get((namespace, name))))

    def list_namespaced_job(self, namespace: str, label_selector: str = "") -> V1JobList:
        self.c.record("list_namespaced_job", namespace=namespace, label_selector=label_selector)
        key, _, value = label_selector.partition("=")
        items = [V1Job(metadata=V1ObjectMeta(name=n)) for (kind, ns, n), b in self.c.objects.items()
                 if kind == "Job" and ns == namespace and b["metadata"]["labels"].get(key) == value]
        return V1JobList(items=items)

    def delete_namespaced_job(self, name: str, namespace: str, **kw: Any) -> V1Status:
        self.c.record("delete_namespaced_job", name=name, namespace=namespace, **kw)
        return self.c.delete("Job", namespace, name)


class _Auth:
    def __init__(self, c: Cluster) -> None:
        self.c = c

    def create_self_subject_access_review(self, body: dict[str, Any]) -> V1SelfSubjectAccessReview:
        self.c.record("create_self_subject_access_review", body=body)
        return V1SelfSubjectAccessReview(spec=body["spec"], status=V1SubjectAccessReviewStatus(allowed=self.c.allowed))
