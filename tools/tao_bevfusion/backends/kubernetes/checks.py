"""Preflight of a Kubernetes launch (issue 12 item 5): the context answers, the namespace exists, we may create
Jobs/Services/ConfigMaps there, enough nodes offer the GPUs per pod asked, the claims are Bound."""

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tao_bevfusion.backends.base import Check
from tao_bevfusion.backends.kubernetes.client import api_error
from tao_bevfusion.core.errors import InputError

if TYPE_CHECKING:
    from tao_bevfusion.backends.kubernetes.backend import KubernetesPlan
    from tao_bevfusion.backends.kubernetes.client import Api

RESOURCES = (("batch", "jobs"), ("", "services"), ("", "configmaps"))


def _can_create(api: "Api", namespace: str) -> list[Check]:
    denied = []
    for group, resource in RESOURCES:
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {
                "resourceAttributes": {
                    "namespace": namespace,
                    "verb": "create",
                    "group": group,
                    "resource": resource,
                }
            },
        }
        answer = api.auth.create_self_subject_access_review(body=review)
        if not answer.status.allowed:
            denied.append(resource)
    if denied:
        return [
            Check(
                name="rbac",
                ok=False,
                message=f"may not create {denied} in namespace {namespace}",
                fix="ask the cluster admin for a Role with create/get/list/delete on jobs, services, "
                "configmaps and get/list on pods, pods/log",
            )
        ]
    return [
        Check(
            name="rbac", ok=True, severity="info", message="may create jobs, services, configmaps"
        )
    ]


def _gpu_nodes(api: "Api", plan: "KubernetesPlan") -> list[Check]:
    if not plan.gpus_per_node:
        return []
    nodes = api.core.list_node().items
    fit = [
        n
        for n in nodes
        if int((n.status.allocatable or {}).get("nvidia.com/gpu", "0") or 0) >= plan.gpus_per_node
    ]
    if len(fit) < plan.num_nodes:
        return [
            Check(
                name="gpu_capacity",
                ok=False,
                message=(
                    f"{plan.num_nodes} pods x {plan.gpus_per_node} GPUs asked; {len(fit)} node(s) offer that many "
                    "allocatable nvidia.com/gpu"
                ),
                fix="lower num_gpus/num_nodes, or add GPU nodes (NVIDIA device plugin)",
            )
        ]
    return [
        Check(
            name="gpu_capacity",
            ok=True,
            severity="info",
            message=f"{len(fit)} node(s) offer >= {plan.gpus_per_node} GPUs",
        )
    ]


def _claims(api: "Api", plan: "KubernetesPlan") -> list[Check]:
    checks = []
    for claim in plan.claims:
        try:
            pvc = api.core.read_namespaced_persistent_volume_claim(
                name=claim, namespace=plan.namespace
            )
            phase = pvc.status.phase if pvc.status else None
        except Exception as exc:
            phase = f"missing (HTTP {api_error(exc)[0]})"
        if phase != "Bound":
            checks.append(
                Check(
                    name=f"pvc:{claim}",
                    ok=False,
                    message=f"PersistentVolumeClaim {claim} is {phase}",
                    fix=f"create/bind it in namespace {plan.namespace} or change backend_options.claims",
                )
            )
    return checks


def preflight(plan: "KubernetesPlan", factory: Callable[[str | None], Any]) -> list[Check]:
    try:
        api = factory(plan.context)
        api.core.read_namespace(name=plan.namespace)
    except InputError as exc:
        return [
            Check(
                name="context", ok=False, message=exc.problems[0].message, fix=exc.problems[0].fix
            )
        ]
    except Exception as exc:
        status, message = api_error(exc)
        if status == 404:
            return [
                Check(
                    name="namespace",
                    ok=False,
                    message=f"namespace {plan.namespace} does not exist",
                    fix="kubectl create namespace <name>, or pass backend_options={'namespace': ...}",
                )
            ]
        return [
            Check(
                name="context",
                ok=False,
                message=f"the API server does not answer: HTTP {status} {message}",
                fix="check KUBECONFIG / backend_options.context and network access to the API server",
            )
        ]
    checks = [
        Check(
            name="context",
            ok=True,
            severity="info",
            message=f"namespace {plan.namespace} reachable",
        )
    ]
    checks += _can_create(api, plan.namespace) + _gpu_nodes(api, plan) + _claims(api, plan)
    host = sorted({m.host for m in plan.mounts})
    if len(plan.claims) < len(plan.mounts) - 1:
        checks.append(
            Check(
                name="host_paths",
                ok=True,
                severity="warning",
                message=(
                    f"hostPath volumes {host[:4]}: every node the pods land on must have them under the same paths"
                ),
                fix="use PVCs for data and results: backend_options={'claims': {'/data': '<pvc>', ...}}",
            )
        )
    return checks
