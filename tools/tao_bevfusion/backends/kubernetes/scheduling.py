"""Cluster scheduling of the Job: a Kueue queue, a priority class, a scheduler, tolerations, extra labels,
the run's deadline (activeDeadlineSeconds), and why a pending Job waits.

Kueue admits a Job by its `kueue.x-k8s.io/queue-name` label (its webhook suspends the Job until the
ClusterQueue has quota, then unsuspends it); a pod that no node can take carries the PodScheduled=False /
Unschedulable condition with the scheduler's message. Both are what get_job reports as `waiting`.
"""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
LABEL_KEY = r"^([a-z0-9.-]{1,253}/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
LABEL_VALUE = r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$"
RESERVED_PREFIXES = (
    "tao-bevfusion/",
    "app.kubernetes.io/",
    "kueue.x-k8s.io/",
    "batch.kubernetes.io/",
)


class Toleration(BaseModel):
    """A pod toleration (e.g. {'key': 'nvidia.com/gpu', 'operator': 'Exists', 'effect': 'NoSchedule'})."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    key: Annotated[str, Field(pattern=LABEL_KEY)] | None = None
    operator: Literal["Exists", "Equal"] = "Equal"
    value: Annotated[str, Field(pattern=LABEL_VALUE)] | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: Annotated[int, Field(ge=0)] | None = None

    def manifest(self) -> dict[str, Any]:
        out: dict[str, Any] = {"operator": self.operator}
        for name, value in (
            ("key", self.key),
            ("value", self.value),
            ("effect", self.effect),
            ("tolerationSeconds", self.toleration_seconds),
        ):
            if value is not None:
                out[name] = value
        return out


def _reserved(labels: dict[str, str]) -> dict[str, str]:
    taken = [k for k in labels if k.startswith(RESERVED_PREFIXES)]
    if taken:
        raise ValueError(
            f"label {taken[0]!r} is set by the plugin (queue: use backend_options.queue); "
            "choose your own key, e.g. team=perception"
        )
    return labels


class Scheduling(BaseModel):
    """backend_options fields for how the cluster schedules the Job (also K8sJob.scheduling)."""

    model_config = ConfigDict(extra="forbid")
    queue: Annotated[str, Field(pattern=DNS_SUBDOMAIN, max_length=63)] | None = Field(
        default=None,
        description=(
            "Kueue LocalQueue name: sets the kueue.x-k8s.io/queue-name label (Kueue then admits the Job)."
        ),
    )
    priority_class: Annotated[str, Field(pattern=DNS_SUBDOMAIN, max_length=253)] | None = Field(
        default=None, description="PriorityClass of the pods (priorityClassName)."
    )
    scheduler_name: Annotated[str, Field(pattern=DNS_SUBDOMAIN, max_length=253)] | None = Field(
        default=None, description="Pod schedulerName (e.g. a gang scheduler such as volcano)."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list,
        max_length=16,
        description=(
            "Pod tolerations, e.g. [{'key': 'nvidia.com/gpu', 'operator': 'Exists', 'effect': 'NoSchedule'}]."
        ),
    )
    labels: dict[
        Annotated[str, Field(pattern=LABEL_KEY)], Annotated[str, Field(pattern=LABEL_VALUE)]
    ] = Field(
        default_factory=dict, max_length=16, description="Extra labels on the Job and its pods."
    )

    @field_validator("labels")
    @classmethod
    def _own_labels(cls, value: dict[str, str]) -> dict[str, str]:
        return _reserved(value)


def job_labels(s: Scheduling | None) -> dict[str, str]:
    if s is None:
        return {}
    return {**s.labels, **({QUEUE_LABEL: s.queue} if s.queue else {})}


def apply_to_job(spec: dict[str, Any], s: Scheduling | None, deadline: int | None) -> None:
    """Put the scheduling fields into a batch/v1 Job spec (in place)."""
    if deadline:
        spec["activeDeadlineSeconds"] = deadline
    if s is None:
        return
    pod = spec["template"]["spec"]
    if s.priority_class:
        pod["priorityClassName"] = s.priority_class
    if s.scheduler_name:
        pod["schedulerName"] = s.scheduler_name
    if s.tolerations:
        pod["tolerations"] = [t.manifest() for t in s.tolerations]


def _unschedulable(pods: dict[int, Any]) -> str | None:
    for rank, pod in sorted(pods.items()):
        for c in (pod.status.conditions or []) if pod.status else []:
            if c.type == "PodScheduled" and c.status == "False":
                return (
                    f"pod of rank {rank} unschedulable ({c.reason}): {str(c.message or '')[:200]}"
                )
    return None


def waiting_reason(job: Any, pods: dict[int, Any]) -> str:
    """Why a Job that has not started waits: Kueue admission, an unschedulable pod, or pods still coming."""
    labels = (job.metadata.labels or {}) if job.metadata else {}
    queue = labels.get(QUEUE_LABEL)
    conditions = (
        [c for c in (job.status.conditions or []) if c.status == "True"] if job.status else []
    )
    suspended = next((c for c in conditions if c.type == "Suspended"), None)
    if (job.spec and job.spec.suspend) or suspended:
        why = f": {str(suspended.message or suspended.reason)[:200]}" if suspended else ""
        return f"Kueue: not admitted yet by LocalQueue {queue or '?'} (the Job is suspended until quota is free){why}"
    unschedulable = _unschedulable(pods)
    if unschedulable:
        return f"Kubernetes: {unschedulable}"
    return "pods pending (scheduling or pulling the image)"
