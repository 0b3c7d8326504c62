"""launch: from a spec (or build_spec's inputs) to a launched run, or to the exact plan (dry run).

The tool run_action (service/run.py) decides first whether a train becomes an AutoML study; what reaches
this module is one run. Order: spec and its verified launch record -> backend capabilities -> the launch request
-> the backend's plan -> preflight -> job record -> submit. Nothing is recorded before the preflight passes;
a submit the engine refuses removes its record again (nothing ran and no id was returned), so the error is
the whole story and list_jobs shows no orphan; the same call can be repeated once the cause is fixed.
"""

__all__ = ["LaunchResult", "Prepared", "RunActionInput", "launch", "prepare", "submit_plan"]

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tao_bevfusion.backends.base import Backend, Check, LaunchRequest, Plan
from tao_bevfusion.backends.environment import validate_env
from tao_bevfusion.backends.images import check_image
from tao_bevfusion.backends.registry import multi_node_backends
from tao_bevfusion.core.actions import ACTION_SPECS
from tao_bevfusion.core.dotted import get_path
from tao_bevfusion.core.errors import EngineError, InputError, problem
from tao_bevfusion.core.layout import SCRATCH_MOUNT, JobFiles, private_dirs, status_path
from tao_bevfusion.core.paths import Mount, host_path
from tao_bevfusion.core.safety import RunSafety
from tao_bevfusion.core.states import Outcome
from tao_bevfusion.core.yamlio import load_yaml_file
from tao_bevfusion.evidence.models import Cursor
from tao_bevfusion.evidence.verdict import Verdict
from tao_bevfusion.jobs import guards, hooks, inputs, notes, plans
from tao_bevfusion.jobs import launch_safety as safe
from tao_bevfusion.jobs.context import AppContext
from tao_bevfusion.jobs.engine import refresh
from tao_bevfusion.jobs.launch_input import LaunchResult, RunActionInput
from tao_bevfusion.jobs.projection import CostProjection
from tao_bevfusion.jobs.reconcile import submitter_token
from tao_bevfusion.jobs.store import Job, new_job_id
from tao_bevfusion.kitti.preflight import check_dataset
from tao_bevfusion.specbuild.build import BuildSpecInput, build_spec
from tao_bevfusion.specbuild.parent import ParentRun
from tao_bevfusion.specbuild.rules import pydantic_problems
from tao_bevfusion.specbuild.sidecar import LaunchSidecar, read_sidecar
from tao_bevfusion.specbuild.surface import CLI_SUBTASK


def _spec_for(inp: RunActionInput, ctx: AppContext, parent: ParentRun | None) -> tuple[Path, LaunchSidecar]:
    if inp.spec_path:
        spec_path = host_path(inp.spec_path, "spec_path", ctx.settings, kind="file")
        return spec_path, read_sidecar(spec_path, ctx.settings.home)
    if not inp.data_root:
        raise InputError(problem("data_root", "give spec_path, or data_root and the build_spec inputs",
                                 "run_action(action=..., data_root='/abs/kitti', ...)"))
    fields = {k: v for k, v in inp.model_dump().items() if k in BuildSpecInput.model_fields}
    built = build_spec(BuildSpecInput.model_validate(fields), ctx, parent)
    spec_path = Path(built.spec_path)
    return spec_path, read_sidecar(spec_path, ctx.settings.home)


def _home_and_cache(inp: RunActionInput, files: JobFiles, results_container: str, mounts: list[Mount],
                    maps_paths: bool) -> tuple[str, str]:
    if not ACTION_SPECS[inp.action].writes_data_root:
        return f"{results_container}/.home", f"{results_container}/.cache"  # docs/container-contract.md §8.3
    # Convert's results dir is the dataset root: keep HOME and caches out of it, in a per-job scratch.
    base = SCRATCH_MOUNT if maps_paths else str(files.scratch)
    if maps_paths:
        mounts.append(Mount(host=str(files.scratch), container=base, mode="rw"))
    return f"{base}/home", f"{base}/cache"


def _request(inp: RunActionInput, job_id: str, spec_path: Path, side: LaunchSidecar, backend: Backend,
             ctx: AppContext, gpus_per_node: int) -> LaunchRequest:
    maps_paths = backend.capabilities.maps_paths_into_container
    files = JobFiles(ctx.settings.home, job_id)
    # A container reads its inputs from a folder of its own, never another job's (jobs/inputs.py).
    mounts = inputs.private_mounts(list(side.mounts), files) if maps_paths else list(side.mounts)
    results_container = next((m.container for m in mounts if m.host == side.results_dir), side.results_dir)
    home, cache = _home_and_cache(inp, files, results_container, mounts, maps_paths)
    gpus = inp.gpus if inp.gpus is not None else (None if ACTION_SPECS[inp.action].needs_gpus else [])
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
        mounts=mounts, image=check_image(inp.image, ctx.settings), gpus=list(gpus) if gpus is not None else None,
        gpus_per_node=gpus_per_node, num_nodes=inp.num_nodes, env=validate_env(inp.env),
        log_path=str(files.log), options=options.model_dump())


def _preflight(plan: Plan, backend: Backend, inp: RunActionInput, side: LaunchSidecar,
               ctx: AppContext, spec: dict[str, Any]) -> list[Check]:
    checks = backend.preflight(plan)
    # The split-size check in the figures of the spec and plan that will run (batch per GPU x GPUs x nodes).
    batch = get_path(spec, "dataset.train_dataset.batch_size")
    gpus = get_path(spec, f"{inp.action}.num_gpus") or get_path(spec, "train.num_gpus") or 1
    report = check_dataset(side.data_root, inp.action, ctx=ctx, batch_size=batch if isinstance(batch, int) else 4,
                           num_gpus=int(gpus) * max(1, inp.num_nodes))
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
    node = ACTION_SPECS[inp.action].config_node
    section = spec.get(node, {}) if node else {}
    spec_nodes = int(section.get("num_nodes", 1) or 1) if isinstance(section, dict) else 1
    nodes = max(inp.num_nodes, spec_nodes)
    if inp.spec_path and "num_nodes" in inp.model_fields_set and inp.num_nodes != spec_nodes:
        raise InputError(problem("num_nodes", f"num_nodes={inp.num_nodes} but the spec says {spec_nodes} (torchrun "
                                 "--nnodes comes from the spec)", f"rebuild the spec with num_nodes={inp.num_nodes}"))
    if nodes > 1 and not backend.capabilities.multi_node:
        able = multi_node_backends()
        raise InputError(problem("num_nodes", f"{nodes} nodes asked, but the {backend.name} backend runs one "
                                 "node (a second node would never join and the job would wait for ever)",
                                 f"use a multi-node backend: {', '.join(able)}; or set num_nodes=1"))
    return nodes


@dataclass
class Prepared:
    """One run, planned: everything a launch records and submits."""

    inp: RunActionInput
    spec_path: Path
    side: LaunchSidecar
    spec: dict[str, Any]
    backend: Backend
    req: LaunchRequest
    plan: Plan
    safety: RunSafety
    cost: CostProjection | None
    launch_warnings: list[str] = field(default_factory=list)  # from the launch hooks (e.g. tracking)

    def told(self) -> dict[str, Any]:
        return {"warnings": notes.warning_lines(self.side.warnings, self.plan.preflight) + self.launch_warnings,
                "overrides": self.side.overrides or [], "lineage": self.side.lineage, "projection": self.cost}


def _guards(inp: RunActionInput, side: LaunchSidecar, ctx: AppContext) -> None:
    busy = [j for j in ctx.store.active_for_results(side.results_dir) if not refresh(j, ctx).terminal]
    if busy:
        raise InputError(problem("results_dir", f"{side.results_dir} is in use by running job {busy[0].id}",
                                 "wait for it, cancel it, or use a fresh results_dir"))
    guards.refuse_reused_results(ctx, inp.action, side.results_dir)
    guards.refuse_other_jobs_folders(ctx, inp.action, side.results_dir, side.data_root)
    guards.refuse_dataset_in_use(ctx, inp.action, side.data_root)


def _gpus_per_node(action: str, spec: dict[str, Any]) -> int:
    node = ACTION_SPECS[action].config_node
    return int(spec.get(node, {}).get("num_gpus", 1)) if node else 0


def _checks(p: Prepared, ctx: AppContext) -> list[Check]:
    checks = notes.spec_preflight(_preflight(p.plan, p.backend, p.inp, p.side, ctx, p.spec), p.spec,
                                   p.inp.action)
    checks += guards.gpu_checks(p.inp.gpus, _gpus_per_node(p.inp.action, p.spec))
    return checks + safe.budget_checks(p.cost, p.safety)


def prepare(inp: RunActionInput, ctx: AppContext, parent: ParentRun | None = None) -> Prepared:
    """The spec (built when not given), the checks before a launch, the request and the backend's plan."""
    spec_path, side = _spec_for(inp, ctx, parent)
    if inp.spec_path and "backend" not in inp.model_fields_set:
        inp = inp.model_copy(update={"backend": side.backend})
    backend = ctx.backend(inp.backend)
    loaded = load_yaml_file(spec_path)
    spec = loaded if isinstance(loaded, dict) else {}
    inp = inp.model_copy(update={"num_nodes": _check_fit(inp, side, backend, spec)})  # the spec's --nnodes
    _guards(inp, side, ctx)
    safety = safe.settings_for(inp, inp.num_nodes, _gpus_per_node(inp.action, spec))
    cost = safe.projection(inp.action, spec, side.data_root, inp.num_nodes, ctx)
    req = _request(inp, new_job_id(), spec_path, side, backend, ctx, _gpus_per_node(inp.action, spec))
    req = safe.with_deadline(req, safety)
    p = Prepared(inp, spec_path, side, spec, backend, req, backend.plan(req), safety, cost)
    p.plan.preflight = _staged(p, ctx, lambda: _checks(p, ctx))
    return p


def _staged(p: Prepared, ctx: AppContext, checks: Any) -> list[Check]:
    """Fill the private input folders (no link followed), then run `checks`; a dry run or a launch that will
    not happen leaves nothing behind."""
    job_dir = JobFiles(ctx.settings.home, p.req.job_id).dir
    try:
        inputs.materialize(inputs.staging(p.req.mounts, p.side.mounts, p.spec), ctx.settings)
        found: list[Check] = checks()
    except BaseException:
        shutil.rmtree(job_dir, ignore_errors=True)
        raise
    if p.inp.dry_run or any(not c.ok for c in found):
        shutil.rmtree(job_dir, ignore_errors=True)
    return found


def _refuse_failed(checks: list[Check]) -> None:
    failed = [c for c in checks if not c.ok]
    if failed:
        raise InputError([problem(f"preflight.{c.name}", c.message, c.fix or "see the message") for c in failed],
                         headline="preflight failed; nothing was launched")


def _start(p: Prepared, ctx: AppContext) -> Job:
    safe.refuse_over_budget(p.cost, p.safety)  # names max_gpu_hours (the preflight line says it too)
    job = _record(p.inp, ctx, p.req.job_id, p.spec_path, p.side, p.spec, p.req, p.plan,
                  safe.record_fields(p.safety, p.req))
    job = _submit(ctx, job, p.backend, p.plan)
    if not job.terminal:
        safe.start_watchdog(job, ctx)
    p.launch_warnings += hooks.launched(job, p.inp.tracking, ctx)
    return job


def launch(inp: RunActionInput, ctx: AppContext, parent: ParentRun | None = None) -> LaunchResult:
    """Launch one run, or plan it (dry_run=true: saved under a plan_id, nothing recorded or started).
    `parent`: parent_job_id, resolved by the caller."""
    p = prepare(inp, ctx, parent)
    if inp.dry_run:
        return _save_dry_run(p, ctx)
    safe.refuse_over_budget(p.cost, p.safety)
    _refuse_failed(p.plan.preflight)
    job = _start(p, ctx)
    return LaunchResult(job_id=job.id, state=job.state, plan=p.plan, **p.told(), message="launched; poll with get_job")


def _save_dry_run(p: Prepared, ctx: AppContext) -> LaunchResult:
    saved = plans.SavedPlan(
        plan_id=plans.new_plan_id(), created_at=time.time(), spec_path=str(p.spec_path),
        inputs=p.inp.model_dump(exclude={"encryption_key", "dry_run", "plan_id", "wait_seconds"}),
        spec_sha256=p.side.spec_sha256, built_spec=not p.inp.spec_path, request=p.req, plan=p.plan.model_dump())
    plans.save(ctx.settings, saved)
    failed = [c for c in p.plan.preflight if not c.ok]
    stop = f"; preflight would stop it: {failed[0].message}" if failed else ""
    return LaunchResult(job_id=None, state="planned", plan=p.plan, plan_id=saved.plan_id, **p.told(), message=(
        f"dry run: nothing launched{stop}. Submit exactly this plan with run_action(plan_id='{saved.plan_id}') "
        f"(within {plans.PLAN_TTL // 3600} h, once)"))


def submit_plan(plan_id: str, action: str, ctx: AppContext) -> LaunchResult:
    """Submit a dry run's plan exactly as it was shown: the same spec file, job id and backend request."""
    saved = plans.load(ctx.settings, plan_id)
    if saved.inputs.get("action") != action:
        raise InputError(problem("action", f"plan {plan_id} is a {saved.inputs.get('action')} plan",
                                 f"pass action='{saved.inputs.get('action')}' with plan_id"))
    if saved.submitted_job_id:
        job = ctx.store.get(saved.submitted_job_id)
        return LaunchResult(job_id=job.id, state=job.state, plan_id=plan_id, message=(
            f"plan {plan_id} was already submitted as job {job.id}; nothing new was launched"))
    inp = RunActionInput.model_validate({**saved.inputs, "spec_path": saved.spec_path})
    spec_path = Path(saved.spec_path)
    side = read_sidecar(spec_path, ctx.settings.home)
    loaded = load_yaml_file(spec_path)
    backend = ctx.backend(inp.backend)
    spec = loaded if isinstance(loaded, dict) else {}
    p = Prepared(inp, spec_path, side, spec, backend, saved.request, backend.plan_model.model_validate(saved.plan),
                 safe.settings_for(inp, saved.request.num_nodes, saved.request.gpus_per_node),
                 safe.projection(inp.action, spec, side.data_root, saved.request.num_nodes, ctx))
    _guards(inp, side, ctx)
    _refuse_failed(_staged(p, ctx, lambda: _checks(p, ctx)))  # checked again now; the plan is submitted unchanged
    job = _start(p, ctx)
    plans.mark_submitted(ctx.settings, saved, job.id)
    return LaunchResult(job_id=job.id, state=job.state, plan=p.plan, plan_id=plan_id, **p.told(),
                        message=f"plan {plan_id} launched as job {job.id}; poll with get_job")


def _record(inp: RunActionInput, ctx: AppContext, job_id: str, spec_path: Path, side: LaunchSidecar,
            spec: dict[str, Any], req: LaunchRequest, plan: Plan, extra: dict[str, Any]) -> Job:
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
              "submitter": submitter_token(), **extra})
    files = job.files(ctx.settings.home)
    private_dirs(files.scratch)
    try:
        inputs.refuse_links(Path(side.results_dir), "results_dir")  # mkdir must not follow a planted link
    except InputError:
        ctx.store.discard_unstarted(job.id)
        shutil.rmtree(files.dir, ignore_errors=True)
        raise
    Path(side.results_dir).mkdir(parents=True, exist_ok=True)
    return job


def _submit(ctx: AppContext, job: Job, backend: Backend, plan: Plan) -> Job:
    try:
        inputs.verify_mounts(plan.mounts, ctx.settings, job.files(ctx.settings.home).dir)  # last look
        handle = backend.submit(plan)
    except (InputError, EngineError) as exc:
        if ctx.store.discard_unstarted(job.id):
            shutil.rmtree(job.files(ctx.settings.home).dir, ignore_errors=True)
            raise type(exc)(exc.problems, headline=f"{exc.headline}; no job was recorded, repeat the call once "
                            "fixed") from exc
        verdict = Verdict(outcome=Outcome.FAILED, reason=f"could not start: {exc.problems[0].message}")
        ctx.store.update(job.id, state="failed", verdict=verdict.model_dump(), finished_at=time.time(),
                         errors=[p.model_dump() for p in exc.problems])
        raise type(exc)(exc.problems, headline=f"{exc.headline} (job {job.id} recorded as failed)") from exc
    # A scheduler (Slurm, Kubernetes) only queues a job: it is pending, not running, until it starts it.
    state = backend.capabilities.state_after_submit
    if not ctx.store.update(job.id, state=state, handle=handle, started_at=time.time()):
        backend.cancel(handle, True)  # the record ended meanwhile (canceled while pending): nothing may run
        backend.cleanup(handle)
    return ctx.store.get(job.id)  # the first get_job polls; returning now keeps the launch call fast
