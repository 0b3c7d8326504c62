"""The Kubernetes backend: an Indexed Job + headless Service + ConfigMap (batch/v1, no operator), through the
official `kubernetes` client (imported on first use). The plan's `yaml` IS what is created.

State from the Job's conditions and its pods; logs from rank 0's pod; cancel deletes the Job with
foreground propagation, and the Service and ConfigMap. Tested against a recording test double of the
client's API objects and by running the rendered pod specs on Docker, never against a live cluster.
"""

import fcntl
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import yaml
from pydantic import Field, ValidationError

from tao_bevfusion.backends.base import Backend, BackendOptions, BackendStatus, Capabilities, Check, LaunchRequest, Plan
from tao_bevfusion.backends.distenv import DEFAULT_MASTER_PORT
from tao_bevfusion.backends.environment import job_env
from tao_bevfusion.backends.kubernetes.client import Api, api_error, connect
from tao_bevfusion.backends.kubernetes.manifests import (
    DNS_LABEL,
    JOB_LABEL,
    QUANTITY,
    K8sJob,
    Volume,
    render,
    render_yaml,
)
from tao_bevfusion.backends.kubernetes.scheduling import Scheduling
from tao_bevfusion.core import layout
from tao_bevfusion.core.errors import EngineError, InputError, problem
from tao_bevfusion.core.settings import Settings


class KubernetesOptions(Scheduling, BackendOptions):
    namespace: str = Field(default="default", pattern=DNS_LABEL, max_length=63, description="Namespace of the job.")
    context: str | None = Field(default=None, max_length=253, description="kubeconfig context (default: current).")
    claims: dict[str, str] = Field(default_factory=dict, description=(
        "Container path -> PersistentVolumeClaim name (e.g. {'/data': 'kitti', '/results/x': 'results'}); "
        "other mounts use hostPath (the node must see the same path)."))
    cpu: str | None = Field(default=None, pattern=QUANTITY, description="CPU request = limit per pod.")
    memory: str | None = Field(default=None, pattern=QUANTITY, description="Memory request = limit (includes shm).")
    shm_size: str = Field(default="16Gi", pattern=QUANTITY, description="/dev/shm emptyDir (medium Memory) size.")
    node_selector: dict[str, str] = Field(default_factory=dict, description="Pod nodeSelector.")
    image_pull_secret: str | None = Field(default=None, pattern=DNS_LABEL, description="imagePullSecrets entry.")
    master_port: int = Field(default=DEFAULT_MASTER_PORT, ge=1024, le=65535, description="Rendezvous port on pod 0.")

    @classmethod
    def from_user(cls, raw: dict[str, Any], settings: Settings) -> "KubernetesOptions":
        return cls.model_validate({**settings.backend_defaults.get("kubernetes", {}), **raw})


class KubernetesPlan(Plan):
    manifests: list[dict[str, Any]] = Field(description="ConfigMap, Service, Job in creation order.")
    yaml: str = Field(description="The same manifests as YAML (`kubectl apply -f` would create the same).")
    namespace: str
    name: str
    context: str | None
    claims: list[str]
    num_nodes: int
    gpus_per_node: int
    spec_host_path: str = Field(description="The spec file; a Secret gets its real text only at submit.")
    spec_name: str


API_FACTORY: Callable[[str | None], Api] = connect  # tests swap in a recording double


def _handle(namespace: str, name: str, context: str | None) -> str:
    return f"k8s:{namespace}:{name}:{context or ''}"


def _parse(handle: str) -> tuple[str, str, str | None]:
    _, namespace, name, context = handle.split(":", 3)
    return namespace, name, context or None


def _volumes(req: LaunchRequest, opts: KubernetesOptions, spec_dir: str) -> list[Volume]:
    out = []
    for i, m in enumerate(req.mounts):
        if m.container == spec_dir:
            continue  # the spec comes from the ConfigMap
        claim = opts.claims.get(m.container)
        out.append(Volume(name=f"m{i}", mount_path=m.container, read_only=m.mode == "ro", claim=claim,
                          host_path=None if claim else m.host))
    return out


def _host_path_notes(req: LaunchRequest, opts: KubernetesOptions) -> list[str]:
    """hostPath volumes live on whichever node runs each pod: results written there are scattered over nodes
    (and a second pod may not see the data). Said in the plan, with the PVC alternative."""
    bare = [m for m in req.mounts if m.container not in opts.claims and m.container != req.results_container_dir]
    notes = []
    if req.results_container_dir not in opts.claims:
        notes.append(f"warning: results go to hostPath {req.results_dir} on whichever node runs each pod (not "
                     "this machine unless it is that node); use a PVC: backend_options={'claims': "
                     f"{{'{req.results_container_dir}': '<pvc name>'}}}}")
    if bare:
        notes.append(f"warning: hostPath volumes {[m.host for m in bare][:4]} must exist under the same paths on "
                     "every node; or mount PVCs with backend_options.claims")
    return notes


class KubernetesBackend(Backend):
    name = "kubernetes"
    capabilities: ClassVar[Capabilities] = Capabilities(
        maps_paths_into_container=True, multi_node=True, gpu_pinning=False, reattach_by_job_id=True, queues=True)
    options_model = KubernetesOptions
    plan_model = KubernetesPlan

    def plan(self, request: LaunchRequest) -> KubernetesPlan:
        req = request
        opts = KubernetesOptions.model_validate(req.options)
        spec_dir, _, spec_name = req.spec_container_path.rpartition("/")
        command = ["bevfusion", req.subtask, "-e", req.spec_container_path]
        env = job_env(req.home_dir, req.cache_dir, req.env)
        gpus = 0 if req.gpus == [] else req.gpus_per_node
        try:
            spec_text, has_key = _spec_text(Path(req.spec_host_path))
            job = K8sJob(name=layout.job_name(req.job_id), namespace=opts.namespace, num_nodes=req.num_nodes,
                         gpus_per_node=gpus, image=req.image, command=command, env=env, cpu=opts.cpu,
                         memory=opts.memory, shm_size=opts.shm_size, volumes=_volumes(req, opts, spec_dir),
                         spec_files={spec_name: spec_text}, spec_mount=spec_dir or "/", spec_secret=has_key,
                         run_as_user=os.getuid(), run_as_group=os.getgid(),
                         labels={"tao-bevfusion/action": req.action},
                         node_selector=opts.node_selector, image_pull_secret=opts.image_pull_secret,
                         master_port=opts.master_port, active_deadline_seconds=req.deadline_seconds,
                         scheduling=Scheduling.model_validate(opts.model_dump(include=set(Scheduling.model_fields))))
        except (ValidationError, OSError) as exc:
            raise InputError(problem("backend_options", f"cannot render the manifests: {str(exc)[:300]}",
                                     "fix the options or mounts named in the message")) from exc
        notes = [f"Indexed Job: {req.num_nodes} pod(s) x {gpus} GPU(s) in namespace {opts.namespace}; rank = "
                 "completion index; node 0 by its DNS name through the headless Service",
                 "not tested against a live cluster (manifests validated against the official schemas)"]
        notes += _host_path_notes(req, opts)
        return KubernetesPlan(backend=self.name, job_id=req.job_id, command=command,
                              equivalent_cli=["kubectl", "apply", "-n", opts.namespace, "-f", "<plan.yaml>"],
                              mounts=req.mounts, env=env, user=f"{os.getuid()}:{os.getgid()}", devices=req.gpus,
                              notes=notes, manifests=render(job), yaml=render_yaml(job), namespace=opts.namespace,
                              name=job.name, context=opts.context, claims=sorted(set(opts.claims.values())),
                              num_nodes=req.num_nodes, gpus_per_node=gpus, spec_host_path=req.spec_host_path,
                              spec_name=spec_name)

    def preflight(self, plan: Plan) -> list[Check]:
        assert isinstance(plan, KubernetesPlan)
        from tao_bevfusion.backends.kubernetes.checks import preflight

        return preflight(plan, API_FACTORY)

    def submit(self, plan: Plan) -> str:
        assert isinstance(plan, KubernetesPlan)
        api, created = API_FACTORY(plan.context), list[str]()
        creators = {"ConfigMap": api.core.create_namespaced_config_map, "Secret": api.core.create_namespaced_secret,
                    "Service": api.core.create_namespaced_service, "Job": api.batch.create_namespaced_job}
        for doc in plan.manifests:
            if doc["kind"] == "Secret":  # the plan shows the key masked; the cluster gets the file as written
                doc = {**doc, "stringData": {plan.spec_name: Path(plan.spec_host_path).read_text()}}
            try:
                creators[doc["kind"]](namespace=plan.namespace, body=doc)
            except Exception as exc:
                status, message = api_error(exc)
                self._delete(api, plan.namespace, plan.name, created)  # no half-created job left behind
                raise InputError(problem("backend", f"Kubernetes refused the {doc['kind']} (HTTP {status}): {message}",
                                         _fix(status), code="SUBMIT_REFUSED"),
                                 headline="Kubernetes refused the job; nothing is running") from exc
            created.append(doc["kind"])
        return _handle(plan.namespace, plan.name, plan.context)

    def poll(self, handle: str) -> BackendStatus:
        from tao_bevfusion.backends.kubernetes.state import job_status

        namespace, name, context = _parse(handle)
        return job_status(API_FACTORY(context), namespace, name)

    def sync_logs(self, handle: str, log_path: Path) -> None:
        """Rank 0's pod log (the others on request through the API); appended past what was copied before."""
        from tao_bevfusion.backends.kubernetes.state import rank_pods

        namespace, name, context = _parse(handle)
        api = API_FACTORY(context)
        pods = rank_pods(api, namespace, name)
        if 0 not in pods:
            return
        try:
            text = api.core.read_namespaced_pod_log(name=pods[0].metadata.name, namespace=namespace, container="tao")
        except Exception:
            return  # not started yet, or gone: the next sync tries again
        data = text.encode() if isinstance(text, str) else bytes(text)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(layout.log_lock(log_path), "w") as lock, open(log_path, "ab") as out:
            fcntl.flock(lock, fcntl.LOCK_EX)
            mark = log_path.with_suffix(".k8s-offset")
            done = int(mark.read_text()) if mark.exists() else 0
            if len(data) > done:
                out.write(data[done:])
                mark.write_text(str(len(data)))

    def cancel(self, handle: str, force: bool) -> None:
        namespace, name, context = _parse(handle)
        self._delete(API_FACTORY(context), namespace, name, ["Job", "Service", "ConfigMap", "Secret"],
                     grace=0 if force else None)

    @staticmethod
    def _delete(api: Api, namespace: str, name: str, kinds: list[str], grace: int | None = None) -> None:
        calls = {"Job": (api.batch.delete_namespaced_job, name),
                 "Service": (api.core.delete_namespaced_service, name),
                 "ConfigMap": (api.core.delete_namespaced_config_map, f"{name}-spec"),
                 "Secret": (api.core.delete_namespaced_secret, f"{name}-spec")}
        for kind in ("Job", "Service", "ConfigMap", "Secret"):
            if kind not in kinds:
                continue
            fn, obj = calls[kind]
            kwargs: dict[str, Any] = {"propagation_policy": "Foreground"}
            if grace is not None:
                kwargs["grace_period_seconds"] = grace
            try:
                fn(name=obj, namespace=namespace, **kwargs)
            except Exception as exc:
                status, message = api_error(exc)
                if status != 404:
                    raise EngineError(problem("backend", f"could not delete {kind} {obj}: HTTP {status} {message}",
                                              f"kubectl delete {kind.lower()} -n {namespace} {obj}")) from exc

    def find(self, job_id: str, plan: dict[str, Any] | None = None) -> str | None:
        """Where the job was submitted (its recorded plan), else the site default namespace/context."""
        if plan and plan.get("namespace"):
            namespace, context = str(plan["namespace"]), plan.get("context") or None
        else:
            opts = KubernetesOptions.from_user({}, Settings.from_env())
            namespace, context = opts.namespace, opts.context
        try:
            found = API_FACTORY(context).batch.list_namespaced_job(namespace=namespace,
                                                                   label_selector=f"{JOB_LABEL}={layout.job_name(job_id)}")
        except Exception:
            return None
        return _handle(namespace, layout.job_name(job_id), context) if found.items else None

    def cleanup(self, handle: str) -> None:
        namespace, name, context = _parse(handle)
        self._delete(API_FACTORY(context), namespace, name, ["Service", "ConfigMap", "Secret"])


def _spec_text(path: Path) -> tuple[str, bool]:
    """The spec as the plan may show it (encryption_key masked), and whether it has a key."""
    from tao_bevfusion.core.redact import mask_keys
    from tao_bevfusion.core.yamlio import load_yaml_file

    text = path.read_text()
    loaded = load_yaml_file(path)
    if not (isinstance(loaded, dict) and loaded.get("encryption_key")):
        return text, False
    return yaml.safe_dump(mask_keys(loaded), sort_keys=False), True


def _fix(status: int) -> str:
    return {401: "refresh the kubeconfig credentials", 403: "ask for create rights on jobs, services and configmaps "
            "in this namespace (RBAC)", 404: "create the namespace or pass backend_options={'namespace': ...}",
            409: "a job of this name exists: cancel it or launch again (a new job id)",
            422: "the API server rejected a field: read its message"}.get(status, "read the API server's message")
