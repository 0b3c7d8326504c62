"""Where an Indexed Job is, from its conditions and its pods (attribute access on the client's models)."""

from typing import Any

from tao_bevfusion.backends.base import BackendStatus
from tao_bevfusion.backends.kubernetes.client import INDEX_KEY, api_error
from tao_bevfusion.backends.kubernetes.manifests import JOB_LABEL
from tao_bevfusion.backends.kubernetes.scheduling import waiting_reason
from tao_bevfusion.core.errors import EngineError, problem


def rank_pods(api: Any, namespace: str, name: str) -> dict[int, Any]:
    """Newest pod per completion index (= node rank)."""
    pods = api.core.list_namespaced_pod(
        namespace=namespace, label_selector=f"{JOB_LABEL}={name}"
    ).items
    out: dict[int, Any] = {}
    for pod in sorted(pods, key=lambda p: str(p.metadata.creation_timestamp or "")):
        index = (pod.metadata.annotations or {}).get(INDEX_KEY)
        if index is not None and str(index).isdigit():
            out[int(index)] = pod
    return out


def _terminated(pod: Any) -> Any:
    for cs in (pod.status.container_statuses or []) if pod.status else []:
        if cs.name == "tao" and cs.state and cs.state.terminated:
            return cs.state.terminated
    return None


def _exit(pods: dict[int, Any]) -> tuple[int | None, bool]:
    """Rank 0's exit code when it ended, else the first failing rank's; OOMKilled anywhere."""
    ends = {rank: t for rank, pod in pods.items() if (t := _terminated(pod)) is not None}
    oom = any(t.reason == "OOMKilled" for t in ends.values())
    failing = sorted(r for r, t in ends.items() if t.exit_code)
    if failing:
        return int(ends[failing[0]].exit_code), oom
    return (int(ends[0].exit_code) if 0 in ends else None), oom


def job_status(api: Any, namespace: str, name: str) -> BackendStatus:
    try:
        job = api.batch.read_namespaced_job(name=name, namespace=namespace)
    except Exception as exc:
        status, message = api_error(exc)
        if status == 404:
            return BackendStatus(state="missing", error="the Job no longer exists")
        raise EngineError(
            problem(
                "backend",
                f"Kubernetes: HTTP {status} {message}",
                "check the kubeconfig/context and the API server; then call get_job again",
                code="K8S_UNREACHABLE",
            )
        ) from exc
    conditions = (
        {c.type: c for c in (job.status.conditions or []) if c.status == "True"}
        if job.status
        else {}
    )
    pods = rank_pods(api, namespace, name)
    if "Complete" in conditions or "Failed" in conditions:
        code, oom = _exit(pods)
        failed = conditions.get("Failed")
        if failed is None:
            return BackendStatus(
                state="exited", exit_code=0 if code is None else code, oom_killed=oom
            )
        return BackendStatus(
            state="exited",
            exit_code=code if code else 1,
            oom_killed=oom,
            error=f"Job failed: {failed.reason or ''} {failed.message or ''}".strip(),
        )
    if len(pods) < job.spec.completions or any(
        p.status and p.status.phase == "Pending" for p in pods.values()
    ):
        return BackendStatus(state="queued", error=waiting_reason(job, pods))
    return BackendStatus(state="running")
