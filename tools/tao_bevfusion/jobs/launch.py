"""run_action: from a spec (or build_spec's inputs) to a launched job, or to the exact plan (dry run).

Order: AutoML routing -> spec and its verified launch record -> backend capabilities -> the launch request
-> the backend's plan -> preflight -> job record -> submit. Nothing is recorded before the preflight passes;
a submit the engine refuses removes its record again (nothing ran and no id was returned), so the error is
the whole story and list_jobs shows no orphan; the same call can be repeated once the cause is fixed.
"""

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, SerializeAsAny, StringConstraints, ValidationError

from tao_bevfusion.backends.base import Backend, Check, LaunchRequest, Plan
from tao_bevfusion.backends.environment import validate_env
from tao_bevfusion.backends.registry import PLANNED_MULTI_NODE, multi_node_backends
from tao_bevfusion.core.errors import EngineError, InputError, problem
from tao_bevfusion.core.layout import JobFiles, private_dirs, status_path
from tao_bevfusion.core.paths import Mount, host_path
from tao_bevfusion.core.settings import AppContext, app_context
from tao_bevfusion.core.yamlio import load_yaml_file
from tao_bevfusion.evidence.models import Cursor
from tao_bevfusion.evidence.verdict import Verdict
from tao_bevfusion.jobs import guards, hooks
from tao_bevfusion.jobs.engine import refresh
from tao_bevfusion.jobs.reconcile import submitter_token
from tao_bevfusion.jobs.store import Job, new_job_id
from tao_bevfusion.jobs.wait import MAX_WAIT, wait_sync
from tao_bevfusion.kitti.preflight import check_dataset
from tao_bevfusion.present import notes
from tao_bevfusion.present.summary import JobSummary, summarize
from tao_bevfusion.specbuild.build import BuildSpecInput, build_spec
from tao_bevfusion.specbuild.rules import pydantic_problems
from tao_bevfusion.specbuild.sidecar import LaunchSidecar, read_sidecar
from tao_bevfusion.specbuild.surface import CLI_SUBTASK
from tao_bevfusion.studies.review import StudyReview

GpuId = Annotated[str, StringConstraints(pattern=r"^(\d{1,3}|GPU-[0-9a-fA-F-]{8,64}|MIG-[0-9A-Za-z/-]{1,80})$")]


def _each_once(gpus: list[str]) -> list[str]:
    if len(set(gpus)) != len(gpus):
        raise ValueError("gpus names a GPU more than once; list each host GPU once")
    return gpus


GpuList = Annotated[list[GpuId], AfterValidator(_each_once)]  # in the type: the MCP argument model checks it too


class RunActionInput(BuildSpecInput):
    """run_action: launch an action from a spec_path written by build_spec, or from build_spec's inputs."""

    data_root: str | None = Field(default=None, max_length=4096, description=(  # type: ignore[assignment]
        "Absolute host path of the KITTI root (needed unless spec_path is given)."))
    spec_path: str | None = Field(default=None, max_length=4096, description="A spec written by build_spec.")
    gpus: GpuList | None = Field(default=None, max_length=16, description=(
        "HOST GPU ids for the job, e.g. ['2','3'] (or GPU-/MIG- UUIDs); default the first num_gpus; "
        "[] = no GPU request."))
    env: dict[str, str] | None = Field(default=None, description=(
        "Extra non-secret job environment (at most 32 variables; loader, device, distributed and secret-looking "
        "names are refused)."))
    image: str | None = Field(default=None, max_length=512, description="Container image (default TAO 5.5).")
    num_nodes: int = Field(default=1, ge=1, le=64, description=(
        "Nodes for this job (multi-node needs a backend that supports it)."))
    backend_options: dict[str, Any] | None = Field(default=None, description=(
        "Options of the chosen backend only. docker: network ('none'|'host'|'bridge'), shm_size ('16G'), "
        "mem_limit ('64g'), memlock (bytes, -1 = unlimited). slurm: partition, account, qos, reservation, runtime "
        "('pyxis'|'apptainer'|'docker'), gpu_flag, cpus_per_task, mem, time_limit, log_dir. kubernetes: namespace, "
        "context, claims ({container path: PVC}), cpu, memory, shm_size, node_selector."))
    automl_policy: Literal["on", "off"] | None = Field(default=None, description=(
        "train only: 'on' (the default: a hyperparameter study, reviewed first) or 'off' (one plain train job)."))
    automl_settings: dict[str, Any] | None = Field(default=None, description=(
        "train with AutoML on: the study's settings, skill-bank names: automl_algorithm (bayesian|random|asha|"
        "hyperband), automl_max_recommendations (trials, baseline included), automl_max_concurrent, "
        "automl_max_epochs, automl_reduction_factor, automl_hyperparameters (dotted keys), custom_param_ranges "
        "({key: {min, max} | {choices}}). The review shows every default."))
    confirm: bool = Field(default=False, description=(
        "train with AutoML on: start the reviewed study (the same arguments as the review call, plus "
        "confirm=true). Without it, train returns state 'review' and launches nothing."))
    request: str | None = Field(default=None, max_length=2000, description="The user's words, for the AutoML "
                                "policy (e.g. 'plain training, no HPO').")
    dry_run: bool = Field(default=False, description="Return the exact launch plan and preflight; launch nothing.")
    wait_seconds: int = Field(default=0, ge=0, le=MAX_WAIT, description="Wait up to this long for progress.")
    tracking: dict[str, Any] | None = Field(default=None, description=(
        "Mirror this job (or study) to an experiment tracker: {'mlflow': '<tracking URI>', 'experiment': "
        "'<name>', 'register_best': false, 'model_name': '<registered model>'}. Default: the "
        "TAO_BEVFUSION_MLFLOW_URI environment (and TAO_BEVFUSION_MLFLOW_EXPERIMENT); {} turns it off. "
        "Credentials come only from MLflow's own environment variables. A tracker that is down or refuses "
        "never stops the job: get_job shows a warning."))


class RunActionResult(BaseModel):
    job_id: str | None = Field(description="Null when nothing was launched (dry run, AutoML review).")
    state: str = Field(description="pending/running/succeeded/... or 'planned' (dry run) / 'review' (AutoML "
                       "study waiting for confirm=true).")
    plan: SerializeAsAny[Plan] | None = Field(default=None, description=(
        "The exact launch the backend makes (the dry run when dry_run=true), with its preflight checks; "
        "each backend adds its own request (docker: run_kwargs)."))
    summary: JobSummary | None = Field(default=None, description="The job as get_job reports it.")
    routing: dict[str, Any] | None = Field(default=None, description="The AutoML routing decision (train).")
    review: StudyReview | None = Field(default=None, description=(
        "train with AutoML on: the study to confirm (search space, algorithm, budget, concurrency, cost, "
        "baseline, results folder, the exact confirming call)."))
    message: str = Field(default="", description="What happened, and the next call when nothing launched.")
    warnings: list[str] = Field(default_factory=list, description="Build, dataset and preflight warnings (capped).")
    overrides: list[dict[str, Any]] = Field(default_factory=list, description=(
        "The user's overrides as they landed in the spec launched (path, value)."))
    lineage: str | None = Field(default=None, description=(
        "train: resume (checkpoint, epoch, same run) or fine-tune (weights loaded, optimizer fresh)."))


def _spec_for(inp: RunActionInput, ctx: AppContext) -> tuple[Path, LaunchSidecar]:
    if inp.spec_path:
        spec_path = host_path(inp.spec_path, "spec_path", ctx.settings, kind="file")
        return spec_path, read_sidecar(spec_path, ctx.settings.home)
    if not inp.data_root:
        raise InputError(problem("data_root", "give spec_path, or data_root and the build_spec inputs",
                                 "run_action(action=..., data_root='/abs/kitti', ...)"))
    fields = {k: v for k, v in inp.model_dump().items() if k in BuildSpecInput.model_fields}
    built = build_spec(BuildSpecInput.model_validate(fields), ctx)
    spec_path = Path(built.spec_path)
    return spec_path, read_sidecar(spec_path, ctx.settings.home)


def _home_and_cache(inp: RunActionInput, files: JobFiles, results_container: str, mounts: list[Mount],
                    maps_paths: bool) -> tuple[str, str]:
    if inp.action != "dataset_convert":
        return f"{results_container}/.home", f"{results_container}/.cache"  # docs/container-contract.md §8.3
    # Convert's results dir is the dataset root: keep HOME and caches out of it, in a per-job scratch.
    base = "/tao-scratch" if maps_paths else str(files.scratch)
    if maps_paths:
        mounts.append(Mount(host=str(files.scratch), container=base, mode="rw"))
    return f"{base}/home", f"{base}/cache"


def _request(inp: RunActionInput, job_id: str, spec_path: Path, side: LaunchSidecar, backend: Backend,
             ctx: AppContext, gpus_per_node: int) -> LaunchRequest:
    maps_paths = backend.capabilities.maps_paths_into_container
    mounts = list(side.mounts)
    files = JobFiles(ctx.settings.home, job_id)
    results_container = next((m.container for m in mounts if m.host == side.results_dir), side.results_dir)
    home, cache = _home_and_cache(inp, files, results_container, mounts, maps_paths)
    gpus = inp.gpus if inp.gpus is not None else ([] if inp.action == "dataset_convert" else None)
    try:
        options = backend.options_model.from_user(inp.backend_options or {}, ctx.settings)
    except ValidationError as exc:
        known = sorted(backend.options_model.model_fields)
        raise InputError([p.model_copy(update={"path": f"backend_options.{p.path}", "fix": f"{p.fix}; the "
                                               f"{backend.name} backend takes {known or 'no options'}"})
                          for p in pydantic_problems(exc)], headline="invalid backend_options") from exc
    return LaunchRequest(
        job_id=job_id, action=inp.action, subtask=CLI_SUBTASK[inp.action], spec_host_path=str(spec_path),
        spec_container_path=side.spec_container_path if maps_paths and side.spec_container_path else str(spec_path),
        results_dir=side.results_dir, results_container_dir=results_container, home_dir=home, cache_dir=cache,
        mounts=mounts, image=inp.image or ctx.settings.image, gpus=list(gpus) if gpus is not None else None,
        gpus_per_node=gpus_per_node, num_nodes=inp.num_nodes, env=validate_env(inp.env),
        log_path=str(files.log), options=options.model_dump())


def _preflight(plan: Plan, backend: Backend, inp: RunActionInput, side: LaunchSidecar,
               ctx: AppContext) -> list[Check]:
    checks = backend.preflight(plan)
    report = check_dataset(side.data_root, inp.action, ctx=ctx)
    for p in report.problems:
        checks.append(Check(name=f"dataset:{p.code}", ok=p.severity != "error", severity=p.severity,
                            message=f"{p.path}: {p.message}", fix=p.fix))
    target = Path(side.results_dir)
    probe = next((p for p in [target, *target.parents] if p.exists()), Path("/"))
    free = shutil.disk_usage(probe).free
    if free < 1 << 30:
        checks.append(Check(name="disk", ok=False, message=f"{free >> 20} MiB free under {probe}",
                            fix="free space or choose another results_dir"))
    elif free < 20 << 30 and inp.action == "train":
        checks.append(Check(name="disk", ok=True, severity="warning",
                            message=f"{free >> 30} GiB free under {probe}; checkpoints are ~0.5 GB each"))
    return checks


def _check_fit(inp: RunActionInput, side: LaunchSidecar, backend: Backend, spec: dict[str, Any]) -> int:
    if side.action != inp.action:
        raise InputError(problem("spec_path", f"the spec is for {side.action}, not {inp.action}",
                                 f"use action='{side.action}' or build a {inp.action} spec"))
    if side.backend != inp.backend:
        raise InputError(problem("backend", f"the spec was built for the {side.backend} backend (its paths "
                                 "differ)", f"use backend='{side.backend}' or rebuild the spec"))
    section = spec.get(inp.action, {}) if inp.action != "dataset_convert" else {}
    spec_nodes = int(section.get("num_nodes", 1) or 1) if isinstance(section, dict) else 1
    nodes = max(inp.num_nodes, spec_nodes)
    if inp.spec_path and "num_nodes" in inp.model_fields_set and inp.num_nodes != spec_nodes:
        raise InputError(problem("num_nodes", f"num_nodes={inp.num_nodes} but the spec says {spec_nodes} (torchrun "
                                 "--nnodes comes from the spec)", f"rebuild the spec with num_nodes={inp.num_nodes}"))
    if nodes > 1 and not backend.capabilities.multi_node:
        able = multi_node_backends() or [f"{b} (planned)" for b in PLANNED_MULTI_NODE]
        raise InputError(problem("num_nodes", f"{nodes} nodes asked, but the {backend.name} backend runs one "
                                 "node (a second node would never join and the job would wait for ever)",
                                 f"use a multi-node backend: {', '.join(able)}; or set num_nodes=1"))
    return nodes


def run_action(inp: RunActionInput, ctx: AppContext | None = None,
               on_progress: Callable[[JobSummary], None] | None = None) -> RunActionResult:
    ctx = ctx or app_context()
    from tao_bevfusion.studies.gate import gate

    gated = gate(inp, ctx)  # AutoML on: the study review, or the started study (tools/automl/gate.py)
    if gated is not None:
        if gated.job_id:  # a started study: the launch hooks (tracking) see it like any job
            gated.warnings += hooks.launched(ctx.store.get(gated.job_id), inp.tracking, ctx)
        return gated
    spec_path, side = _spec_for(inp, ctx)
    if inp.spec_path and "backend" not in inp.model_fields_set:
        inp = inp.model_copy(update={"backend": side.backend})
    backend = ctx.backend(inp.backend)
    loaded = load_yaml_file(spec_path)
    spec = loaded if isinstance(loaded, dict) else {}
    inp = inp.model_copy(update={"num_nodes": _check_fit(inp, side, backend, spec)})  # the spec's --nnodes
    busy = [j for j in ctx.store.active_for_results(side.results_dir) if not refresh(j, ctx).terminal]
    if busy:
        raise InputError(problem("results_dir", f"{side.results_dir} is in use by running job {busy[0].id}",
                                 "wait for it, cancel it, or use a fresh results_dir"))
    guards.refuse_reused_results(ctx, inp.action, side.results_dir)
    guards.refuse_dataset_in_use(ctx, inp.action, side.data_root)
    gpus_per_node = int(spec.get(inp.action, {}).get("num_gpus", 1)) if inp.action != "dataset_convert" else 0
    job_id = new_job_id()
    req = _request(inp, job_id, spec_path, side, backend, ctx, gpus_per_node)
    plan = backend.plan(req)
    plan.preflight = notes.spec_preflight(_preflight(plan, backend, inp, side, ctx), spec, inp.action)
    plan.preflight += guards.gpu_checks(inp.gpus, gpus_per_node)
    failed = [c for c in plan.preflight if not c.ok]
    told: dict[str, Any] = {"warnings": notes.warning_lines(side.warnings, plan.preflight),
                            "overrides": side.overrides or [], "lineage": side.lineage}
    if inp.dry_run:
        return RunActionResult(job_id=None, state="planned", plan=plan, **told, message=(
            "dry run: nothing launched" + (f"; preflight would stop it: {failed[0].message}" if failed else "")))
    if failed:
        raise InputError([problem(f"preflight.{c.name}", c.message, c.fix or "see the message") for c in failed],
                         headline="preflight failed; nothing was launched")
    job = _record(inp, ctx, job_id, spec_path, side, spec, req, plan)
    job = _submit(ctx, job, backend, plan)
    told["warnings"] = told["warnings"] + hooks.launched(job, inp.tracking, ctx)
    if inp.wait_seconds:
        job = wait_sync(job.id, inp.wait_seconds, ctx, on_progress)
    return RunActionResult(job_id=job.id, state=job.state, plan=plan, summary=summarize(job), **told,
                           message="launched; poll with get_job")


def _record(inp: RunActionInput, ctx: AppContext, job_id: str, spec_path: Path, side: LaunchSidecar,
            spec: dict[str, Any], req: LaunchRequest, plan: Plan) -> Job:
    status_file = status_path(inp.action, Path(side.results_dir), Path(side.data_root))
    cursor = Cursor(status_offset=status_file.stat().st_size if status_file.exists() else 0)
    job = ctx.store.create(
        job_id=job_id, action=inp.action, backend=inp.backend, spec_path=str(spec_path),
        spec_sha256=side.spec_sha256, results_dir=side.results_dir, data_root=side.data_root,
        parent_job_id=side.parent_job_id, plan=plan.model_dump(), cursor=cursor,
        meta={"num_epochs": side.num_epochs, "checkpoint_choice": side.checkpoint_choice,
              "convert_mode": spec.get("mode", "training"), "image": req.image,
              "has_secret": bool(spec.get("encryption_key")), "hyper": notes.hyperparameters(spec, inp.action),
              "overrides": side.overrides, "lineage": side.lineage,
              "warnings": notes.warning_lines(side.warnings, plan.preflight) or None,
              "secrets": [str(spec["encryption_key"])] if spec.get("encryption_key") else [],
              "submitter": submitter_token()})
    files = job.files(ctx.settings.home)
    private_dirs(files.scratch)
    Path(side.results_dir).mkdir(parents=True, exist_ok=True)
    return job


def _submit(ctx: AppContext, job: Job, backend: Backend, plan: Plan) -> Job:
    try:
        handle = backend.submit(plan)
    except (InputError, EngineError) as exc:
        if ctx.store.discard_unstarted(job.id):
            shutil.rmtree(job.files(ctx.settings.home).dir, ignore_errors=True)
            raise type(exc)(exc.problems, headline=f"{exc.headline}; no job was recorded, repeat the call once "
                            "fixed") from exc
        verdict = Verdict(outcome="failed", reason=f"could not start: {exc.problems[0].message}")
        ctx.store.update(job.id, state="failed", verdict=verdict.model_dump(), finished_at=time.time(),
                         errors=[p.model_dump() for p in exc.problems])
        raise type(exc)(exc.problems, headline=f"{exc.headline} (job {job.id} recorded as failed)") from exc
    if not ctx.store.update(job.id, state="running", handle=handle, started_at=time.time()):
        backend.cancel(handle, True)  # the record ended meanwhile (canceled while pending): nothing may run
        backend.cleanup(handle)
    return ctx.store.get(job.id)  # the first get_job polls; returning now keeps the launch call fast
