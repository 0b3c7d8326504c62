"""Render a multi-node launch as Kubernetes manifests (pure, golden-tested): ConfigMap + headless Service +
Indexed Job (batch/v1; no operator needed).

One pod per node (`completions = parallelism = num_nodes`, `completionMode: Indexed`); the pod's
completion index is its node rank; node 0 is reached by its stable DNS name `<job>-0.<service>`, which
the headless Service publishes before the pod is ready (a static rendezvous waits for every node).
`backoffLimit: 0` plus a `podFailurePolicy` that fails the Job: a static rendezvous cannot take a rank back.
"""

from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tao_bevfusion.backends.distenv import DEFAULT_MASTER_PORT, check_user_env
from tao_bevfusion.backends.kubernetes.scheduling import Scheduling, apply_to_job, job_labels
from tao_bevfusion.core import layout

DNS_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$"
LABEL_KEY = r"^([a-z0-9.-]{1,253}/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
LABEL_VALUE = r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$"
INDEX_ANNOTATION = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
JOB_LABEL = layout.K8S_JOB_LABEL
CONTAINER = "tao"


class Volume(BaseModel):
    """A dataset or results directory: a PersistentVolumeClaim or a host path (exactly one)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Annotated[str, Field(pattern=DNS_LABEL, max_length=63)]
    mount_path: Annotated[str, Field(pattern=r"^/")]
    read_only: bool = False
    claim: (
        Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)] | None
    ) = None
    host_path: Annotated[str, Field(pattern=r"^/")] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> "Volume":
        if (self.claim is None) == (self.host_path is None):
            raise ValueError(
                f"volume {self.name!r}: set exactly one of claim (a PVC name) or host_path"
            )
        return self

    def source(self) -> dict[str, Any]:
        if self.claim is not None:
            return {"persistentVolumeClaim": {"claimName": self.claim, "readOnly": self.read_only}}
        return {"hostPath": {"path": self.host_path, "type": "Directory"}}


class K8sJob(BaseModel):
    """Everything the manifests depend on; cluster-specific settings have no defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # Pod hostnames are <name>-<index> and must stay a DNS label: keep room for the index.
    name: Annotated[str, Field(pattern=DNS_LABEL, max_length=52)]
    namespace: Annotated[str, Field(pattern=DNS_LABEL, max_length=63)]
    num_nodes: Annotated[int, Field(ge=1, le=512)]
    gpus_per_node: Annotated[int, Field(ge=0, le=16)]
    image: Annotated[str, Field(min_length=1)]
    command: Annotated[list[str], Field(min_length=1)]
    env: dict[str, str] = {}
    cpu: Annotated[str, Field(pattern=QUANTITY)] | None = None
    memory: Annotated[str, Field(pattern=QUANTITY)] | None = None
    shm_size: Annotated[str, Field(pattern=QUANTITY)] = "16Gi"
    volumes: list[Volume] = []
    spec_files: dict[Annotated[str, Field(pattern=r"^[-._A-Za-z0-9]+$")], str] = {}
    spec_mount: Annotated[str, Field(pattern=r"^/")] = layout.SPECS_MOUNT
    spec_secret: bool = Field(
        default=False, description="Ship the spec files in a Secret (they hold a key)."
    )
    run_as_user: Annotated[int, Field(ge=0)] | None = None
    run_as_group: Annotated[int, Field(ge=0)] | None = None
    labels: dict[
        Annotated[str, Field(pattern=LABEL_KEY)], Annotated[str, Field(pattern=LABEL_VALUE)]
    ] = {}
    node_selector: dict[str, str] = {}
    image_pull_secret: Annotated[str, Field(pattern=DNS_LABEL)] | None = None
    master_port: Annotated[int, Field(ge=1024, le=65535)] = DEFAULT_MASTER_PORT
    scheduling: Scheduling | None = None
    active_deadline_seconds: Annotated[int, Field(ge=1)] | None = None

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        return check_user_env(v)

    @model_validator(mode="after")
    def _names_unique(self) -> "K8sJob":
        names = [v.name for v in self.volumes]
        if len(set(names)) != len(names) or {"dshm", "spec"} & set(names):
            raise ValueError(
                "volume names must be unique and not 'dshm' or 'spec' (the renderer's own)"
            )
        return self

    @property
    def service(self) -> str:
        return self.name

    @property
    def master_addr(self) -> str:
        return f"{self.name}-0.{self.service}"


def _labels(job: K8sJob) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "tao-bevfusion",
        "app.kubernetes.io/managed-by": "tao-bevfusion",
        **job.labels,
        **job_labels(job.scheduling),
        JOB_LABEL: job.name,
    }


def _meta(job: K8sJob, name: str) -> dict[str, Any]:
    return {"name": name, "namespace": job.namespace, "labels": _labels(job)}


def _env(job: K8sJob) -> list[dict[str, Any]]:
    rank = {"valueFrom": {"fieldRef": {"fieldPath": INDEX_ANNOTATION}}}
    port, n = str(job.master_port), str(job.num_nodes)
    fixed = [
        ("PET_NNODES", n),
        ("PET_MASTER_ADDR", job.master_addr),
        ("PET_MASTER_PORT", port),
        ("WORLD_SIZE", n),
        ("MASTER_ADDR", job.master_addr),
        ("MASTER_PORT", port),
        ("NUM_GPU_PER_NODE", str(job.gpus_per_node)),
    ]
    return [
        {"name": "PET_NODE_RANK", **rank},
        {"name": "NODE_RANK", **rank},
        *({"name": k, "value": v} for k, v in fixed),
        *({"name": k, "value": v} for k, v in sorted(job.env.items())),
    ]


def _resources(job: K8sJob) -> dict[str, Any]:
    amounts: dict[str, Any] = {}
    if job.cpu:
        amounts["cpu"] = job.cpu
    if job.memory:  # the /dev/shm emptyDir counts against this limit
        amounts["memory"] = job.memory
    if job.gpus_per_node:
        amounts["nvidia.com/gpu"] = job.gpus_per_node
    return {"limits": dict(amounts), "requests": dict(amounts)} if amounts else {}


def _volumes(job: K8sJob) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    volumes: list[dict[str, Any]] = [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": job.shm_size}}
    ]
    mounts: list[dict[str, Any]] = [{"name": "dshm", "mountPath": "/dev/shm"}]
    if job.spec_files:
        source = (
            {"secret": {"secretName": f"{job.name}-spec"}}
            if job.spec_secret
            else {"configMap": {"name": f"{job.name}-spec"}}
        )
        volumes.append({"name": "spec", **source})
        mounts.append({"name": "spec", "mountPath": job.spec_mount, "readOnly": True})
    for v in job.volumes:
        volumes.append({"name": v.name, **v.source()})
        mounts.append({"name": v.name, "mountPath": v.mount_path, "readOnly": v.read_only})
    return volumes, mounts


def _pod_spec(job: K8sJob) -> dict[str, Any]:
    volumes, mounts = _volumes(job)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": job.image,
        "command": list(job.command),
        "env": _env(job),
        "ports": [{"name": "rdzv", "containerPort": job.master_port}],
        "volumeMounts": mounts,
    }
    resources = _resources(job)
    if resources:
        container["resources"] = resources
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "subdomain": job.service,
        "containers": [container],
        "volumes": volumes,
    }
    security = {
        k: v
        for k, v in (("runAsUser", job.run_as_user), ("runAsGroup", job.run_as_group))
        if v is not None
    }
    if security:
        spec["securityContext"] = security
    if job.node_selector:
        spec["nodeSelector"] = dict(job.node_selector)
    if job.image_pull_secret:
        spec["imagePullSecrets"] = [{"name": job.image_pull_secret}]
    return spec


def job_manifest(job: K8sJob) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(job, job.name),
        "spec": {
            "completions": job.num_nodes,
            "parallelism": job.num_nodes,
            "completionMode": "Indexed",
            "backoffLimit": 0,
            "podFailurePolicy": {
                "rules": [
                    {"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget"}]},
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": CONTAINER,
                            "operator": "NotIn",
                            "values": [0],
                        },
                    },
                ]
            },
            "template": {"metadata": {"labels": _labels(job)}, "spec": _pod_spec(job)},
        },
    }
    apply_to_job(manifest["spec"], job.scheduling, job.active_deadline_seconds)
    return manifest


def service_manifest(job: K8sJob) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(job, job.service),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {JOB_LABEL: job.name},
            "ports": [{"name": "rdzv", "port": job.master_port, "targetPort": job.master_port}],
        },
    }


def configmap_manifest(job: K8sJob) -> dict[str, Any]:
    """The spec files: a ConfigMap, or a Secret when they carry a key (ConfigMaps are readable by more roles)."""
    data = dict(sorted(job.spec_files.items()))
    if job.spec_secret:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": _meta(job, f"{job.name}-spec"),
            "type": "Opaque",
            "stringData": data,
        }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(job, f"{job.name}-spec"),
        "data": data,
    }


def render(job: K8sJob) -> list[dict[str, Any]]:
    """The manifests in creation order: ConfigMap or Secret (when there are spec files), Service, Job."""
    docs = [configmap_manifest(job)] if job.spec_files else []
    return [*docs, service_manifest(job), job_manifest(job)]


def render_yaml(job: K8sJob) -> str:
    return yaml.safe_dump_all(render(job), sort_keys=False, default_flow_style=False, width=120)
