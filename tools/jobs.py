"""The execution engine: run_action, refresh (poll + incremental scan + verdict), cancel, list, logs.

State lives on disk (SQLite + per-job folders), so every call may come from a fresh process (the MCP
Inspector starts one per call) and jobs keep running when the server exits.
"""

import functools
import hashlib
import json
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from tools.backends import Check, LaunchPlan, LaunchRequest, get_backend, validate_env
from tools.dataset import check_dataset
from tools.errors import ToolInputError, problem
from tools.jobstore import Job, JobStore, check_job_id, new_job_id
from tools.outcome import Verdict, check_artifacts, decide, scan_log, scan_status, status_path
from tools.paths import Mount, host_path
from tools.settings import Settings
from tools.specbuild import BuildSpecInput, build_spec, launch_sidecar
from tools.summary import JobSummary, job_secrets, redact, summarize
from tools.surface import CLI_SUBTASK

MAX_WAIT = 45
OUTCOME_STATE = {"succeeded": "succeeded", "succeeded_with_teardown_crash": "succeeded", "failed": "failed",
                 "killed": "failed", "canceled": "canceled", "lost": "unknown"}


class RunActionInput(BuildSpecInput):
    """run_action: launch an action from a spec_path written by build_spec, or from build_spec's inputs."""

    data_root: str | None = Field(default=None, max_length=4096, description=(  # type: ignore[assignment]
        "Absolute host path of the KITTI root (needed unless spec_path is given)."))
    spec_path: str | None = Field(default=None, max_length=4096, description="A spec written by build_spec.")
    gpus: list[str] | None = Field(default=None, max_length=16, description=(
        "HOST GPU ids for the container, e.g. ['2','3']; default the first num_gpus; [] = no GPU request."))
    env: dict[str, str] | None = Field(default=None, description="Extra non-secret container environment.")
    image: str | None = Field(default=None, max_length=512, description="Container image (default TAO 5.5).")
    network: Literal["none", "host", "bridge"] = Field(default="none", description="Container network mode.")
    shm_size: str = Field(default="16G", pattern=r"^\d+[kKmMgG]?$", description="/dev/shm size.")
    mem_limit: str | None = Field(default=None, pattern=r"^\d+[kKmMgG]?$", description="Container memory limit.")
    memlock: int | None = Field(default=None, ge=-1, description=(
        "Container RLIMIT_MEMLOCK in bytes; default TAO_BEVFUSION_MEMLOCK or -1 = unlimited (NVIDIA's "
        "recommendation). Lower it only when the engine may not raise it."))
    automl_policy: Literal["on", "off"] | None = Field(default=None, description="train only: on (route via "
                                                       "tao-run-automl, the default) or off (launch directly).")
    request: str | None = Field(default=None, max_length=2000, description="The user's words, for the AutoML "
                                "policy (e.g. 'plain training, no HPO').")
    dry_run: bool = Field(default=False, description="Return the exact launch plan and preflight; launch nothing.")
    wait_seconds: int = Field(default=0, ge=0, le=MAX_WAIT, description="Wait up to this long for progress.")


class RunActionResult(BaseModel):
    job_id: str | None = Field(description="Null when nothing was launched (dry run, AutoML routing).")
    state: str = Field(description="pending/running/succeeded/... or 'planned' / 'routed'.")
    plan: LaunchPlan | None = Field(default=None, description="The exact launch (the dry run when dry_run=true).")
    summary: JobSummary | None = Field(default=None, description="The job as get_job reports it.")
    routing: dict[str, Any] | None = Field(default=None, description="The AutoML routing decision (train).")
    message: str = Field(default="", description="What happened, and the next call when nothing launched.")


def open_store(settings: Settings) -> JobStore:
    """One store per state dir per process: the schema script runs once, not on every poll."""
    return _store_for(settings.home)


@functools.lru_cache(maxsize=8)
def _store_for(home: Path) -> JobStore:
    return JobStore(home)


def _sidecar(spec_path: Path) -> dict[str, Any]:
    side = launch_sidecar(spec_path)
    if not side.is_file():
        raise ToolInputError(problem("spec_path", f"{spec_path} has no launch sidecar ({side.name})",
                                     "write specs with build_spec (it records the mounts the launch needs)"))
    data: dict[str, Any] = json.loads(side.read_text())
    return data


def _spec_for(inp: RunActionInput, settings: Settings) -> tuple[Path, dict[str, Any]]:
    if inp.spec_path:
        spec_path = host_path(inp.spec_path, "spec_path", settings, kind="file")
        side = _sidecar(spec_path)
        if hashlib.sha256(spec_path.read_bytes()).hexdigest() != side["spec_sha256"]:
            raise ToolInputError(problem("spec_path", "the spec changed after build_spec validated it",
                                         f"rebuild: build_spec(..., base_spec='{spec_path}')"))
        return spec_path, side
    if not inp.data_root:
        raise ToolInputError(problem("data_root", "give spec_path, or data_root and the build_spec inputs",
                                     "run_action(action=..., data_root='/abs/kitti', ...)"))
    fields = {k: v for k, v in inp.model_dump().items() if k in BuildSpecInput.model_fields}
    built = build_spec(BuildSpecInput.model_validate(fields), settings)
    spec_path = Path(built.spec_path)
    return spec_path, _sidecar(spec_path)


def _request(inp: RunActionInput, job_id: str, spec_path: Path, side: dict[str, Any], settings: Settings,
             num_gpus: int) -> LaunchRequest:
    mounts = [Mount.model_validate(m) for m in side["mounts"]]
    local = side["backend"] == "local"
    job_dir = settings.home / "jobs" / job_id
    results = Path(side["results_dir"])
    results_container = next((m.container for m in mounts if m.host == str(results)), str(results))
    if inp.action == "dataset_convert":
        # Convert's results dir is the dataset root: keep HOME and caches out of it, in a per-job scratch.
        scratch = job_dir / "scratch"
        base = str(scratch) if local else "/tao-scratch"
        if not local:
            mounts.append(Mount(host=str(scratch), container=base, mode="rw"))
        home, cache = f"{base}/home", f"{base}/cache"
    else:
        home, cache = f"{results_container}/.home", f"{results_container}/.cache"  # contract §8.3
    gpus = inp.gpus if inp.gpus is not None else ([] if inp.action == "dataset_convert" else None)
    return LaunchRequest(
        job_id=job_id, action=inp.action, subtask=CLI_SUBTASK[inp.action], spec_host_path=str(spec_path),
        spec_container_path=str(spec_path) if local else side["spec_container_path"], results_dir=str(results),
        results_container_dir=results_container, home_dir=home, cache_dir=cache,
        mounts=mounts, image=inp.image or settings.image, gpus=gpus, num_gpus=num_gpus,
        env=validate_env(inp.env), network=inp.network, shm_size=inp.shm_size, mem_limit=inp.mem_limit,
        memlock=settings.memlock if inp.memlock is None else inp.memlock,
        log_path=str(job_dir / "job.log"))


def _preflight(plan: LaunchPlan, req: LaunchRequest, inp: RunActionInput, side: dict[str, Any],
               settings: Settings) -> list[Check]:
    checks = get_backend(side["backend"]).preflight(plan, req)
    report = check_dataset(side["data_root"], inp.action, settings=settings)
    for p in report.problems:
        checks.append(Check(name=f"dataset:{p.code}", ok=p.severity != "error", severity=p.severity,
                            message=f"{p.path}: {p.message}", fix=p.fix))
    target = Path(side["results_dir"])
    probe = next((p for p in [target, *target.parents] if p.exists()), Path("/"))
    free = shutil.disk_usage(probe).free
    if free < 1 << 30:
        checks.append(Check(name="disk", ok=False, message=f"{free >> 20} MiB free under {probe}",
                            fix="free space or choose another results_dir"))
    elif free < 20 << 30 and inp.action == "train":
        checks.append(Check(name="disk", ok=True, severity="warning",
                            message=f"{free >> 30} GiB free under {probe}; checkpoints are ~0.5 GB each"))
    return checks


def _routing(inp: RunActionInput) -> dict[str, Any] | None:
    if inp.action != "train":
        return None
    from tools.policy import resolve_automl_policy

    decision = resolve_automl_policy("train", request=inp.request, automl_policy=inp.automl_policy)
    return decision.model_dump() if decision.route != "direct" else None


def run_action(inp: RunActionInput, settings: Settings | None = None,
               on_progress: Callable[[JobSummary], None] | None = None) -> RunActionResult:
    settings = settings or Settings.from_env()
    routing = _routing(inp)
    if routing:
        return RunActionResult(job_id=None, state="routed", routing=routing, message=(
            "AutoML policy is on: train goes through tao-skill-bank:tao-run-automl with "
            f"skill_dir={routing['skill_dir']}. To launch plain training now, call run_action again with "
            "automl_policy='off'."))
    spec_path, side = _spec_for(inp, settings)
    if side["action"] != inp.action:
        raise ToolInputError(problem("spec_path", f"the spec is for {side['action']}, not {inp.action}",
                                     f"use action='{side['action']}' or build a {inp.action} spec"))
    if inp.spec_path and "backend" not in inp.model_fields_set:
        inp = inp.model_copy(update={"backend": side["backend"]})
    if inp.spec_path and side["backend"] != inp.backend:
        raise ToolInputError(problem("backend", f"the spec was built for the {side['backend']} backend (its paths "
                                     "differ)", f"use backend='{side['backend']}' or rebuild the spec"))
    store = open_store(settings)
    busy = [j for j in store.active_for_results(side["results_dir"]) if not refresh(j, settings).terminal]
    if busy:
        raise ToolInputError(problem("results_dir", f"{side['results_dir']} is in use by running job {busy[0].id}",
                                     "wait for it, cancel it, or use a fresh results_dir"))
    spec = _load_spec(spec_path)
    num_gpus = int(spec.get(inp.action, {}).get("num_gpus", 1)) if inp.action != "dataset_convert" else 0
    job_id = new_job_id()
    req = _request(inp, job_id, spec_path, side, settings, num_gpus)
    backend = get_backend(side["backend"])
    plan = backend.plan(req)
    plan.preflight = _preflight(plan, req, inp, side, settings)
    failed = [c for c in plan.preflight if not c.ok]
    if inp.dry_run:
        return RunActionResult(job_id=None, state="planned", plan=plan, message=(
            "dry run: nothing launched" + (f"; preflight would stop it: {failed[0].message}" if failed else "")))
    if failed:
        raise ToolInputError([problem(f"preflight.{c.name}", c.message, c.fix or "see the message")
                              for c in failed], headline="preflight failed; nothing was launched")
    job = store.create(job_id=job_id, action=inp.action, backend=side["backend"], spec_path=str(spec_path),
                       spec_sha256=side["spec_sha256"], results_dir=side["results_dir"], data_root=side["data_root"],
                       parent_job_id=side.get("parent_job_id"),
                       meta={"num_epochs": side.get("num_epochs"), "checkpoint_choice": side.get("checkpoint_choice"),
                             "convert_mode": spec.get("mode", "training"), "image": req.image,
                             "has_secret": bool(spec.get("encryption_key"))})
    Path(req.log_path).parent.mkdir(parents=True, exist_ok=True)
    (Path(req.log_path).parent / "scratch").mkdir(exist_ok=True)
    Path(side["results_dir"]).mkdir(parents=True, exist_ok=True)
    status_file = status_path(inp.action, Path(side["results_dir"]), Path(side["data_root"]))
    cursor = {"status_offset": status_file.stat().st_size if status_file.exists() else 0, "log_offset": 0}
    store.update(job.id, plan=plan.model_dump(), cursor=cursor)
    try:
        handle = backend.submit(plan, req)
    except ToolInputError as exc:
        verdict = Verdict(outcome="failed", reason=f"could not start: {exc.problems[0].message}")
        store.update(job.id, state="failed", verdict=verdict.model_dump(), finished_at=time.time(),
                     errors=[p.model_dump() for p in exc.problems])
        raise
    store.update(job.id, state="running", handle=handle, started_at=time.time())
    job = store.get(job.id)  # the first get_job polls; returning now keeps the launch call fast
    if inp.wait_seconds:
        job = wait_for(job.id, inp.wait_seconds, settings, on_progress)
    return RunActionResult(job_id=job.id, state=job.state, plan=plan, summary=summarize(job),
                           message="launched; poll with get_job")


def _load_spec(path: Path) -> dict[str, Any]:
    from tools.yamlio import load_yaml_file

    data = load_yaml_file(path)
    return data if isinstance(data, dict) else {}


def refresh(job: Job, settings: Settings) -> Job:
    """Poll the backend, sync and scan new output, and finish the record when the job has ended."""
    if job.terminal or (job.state == "pending" and not job.handle):
        return job
    store = open_store(settings)
    backend = get_backend(job.backend)
    handle = job.handle or backend.find(job.id)
    if handle is None:
        return _finish(store, job, None, False, container_missing=True, settings=settings)
    status = backend.poll(handle)
    log_path = job.job_dir(settings.home) / "job.log"
    cursor = backend.sync_logs(handle, str(log_path), dict(job.cursor))
    findings, progress, metrics = dict(job.findings), dict(job.progress), dict(job.metrics)
    final = status.state in ("exited", "missing")
    scan_log(log_path, cursor, findings, progress, final=final)
    scan_status(status_path(job.action, Path(job.results_dir), Path(job.data_root)), cursor, findings, progress,
                metrics)
    store.update(job.id, cursor=cursor, findings=findings, progress=progress, metrics=metrics,
                 handle=handle)
    job = store.get(job.id)
    if status.state in ("running", "created"):
        return job
    return _finish(store, job, status.exit_code, status.oom_killed, container_missing=status.state == "missing",
                   settings=settings, handle=handle)


def _finish(store: JobStore, job: Job, exit_code: int | None, oom: bool, container_missing: bool,
            settings: Settings, handle: str | None = None) -> Job:
    present, missing = check_artifacts(job.action, Path(job.results_dir), Path(job.data_root),
                                       job.started_at or job.created_at, job.meta.get("num_epochs"), job.findings,
                                       job.meta.get("convert_mode", "training"))
    verdict = decide(exit_code, oom, job.cancel_requested, container_missing, job.findings, present,
                     missing)
    store.update(job.id, state=OUTCOME_STATE[verdict.outcome], verdict=verdict.model_dump(), finished_at=time.time())
    if handle:
        get_backend(job.backend).cleanup(handle)
    return store.get(job.id)


def get_job(job_id: str, settings: Settings | None = None) -> JobSummary:
    settings = settings or Settings.from_env()
    return summarize(refresh(open_store(settings).get(check_job_id(job_id)), settings))


def wait_for(job_id: str, seconds: float, settings: Settings,
             on_progress: Callable[[JobSummary], None] | None = None) -> Job:
    deadline = time.monotonic() + min(seconds, MAX_WAIT)
    store = open_store(settings)
    job = refresh(store.get(job_id), settings)
    while not job.terminal and time.monotonic() < deadline:
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        job = refresh(store.get(job_id), settings)
        if on_progress:
            on_progress(summarize(job))
    return job


class CancelResult(BaseModel):
    job_id: str = Field(description="The job.")
    state: str = Field(description="Its state after the cancel (canceled, or the state it had already ended in).")
    message: str = Field(description="What was done.")


def cancel_job(job_id: str, force: bool = False, settings: Settings | None = None) -> CancelResult:
    """Idempotent: a finished job is reported as it is; a running one is stopped and recorded as canceled."""
    settings = settings or Settings.from_env()
    store = open_store(settings)
    job = store.get(check_job_id(job_id))
    if job.terminal:
        return CancelResult(job_id=job.id, state=job.state, message=f"already {job.state}; nothing to cancel")
    store.update(job.id, cancel_requested=True)  # recorded before the stop, so exit 137 reads as canceled
    if job.handle:
        get_backend(job.backend).cancel(job.handle, force)
    deadline = time.monotonic() + 15
    job = refresh(store.get(job.id), settings)
    while not job.terminal and time.monotonic() < deadline:
        time.sleep(0.5)
        job = refresh(store.get(job.id), settings)
    if not job.terminal and force and job.handle:
        get_backend(job.backend).cancel(job.handle, True)
    return CancelResult(job_id=job.id, state=job.state, message="canceled" if job.state == "canceled" else
                        f"stop requested; state {job.state} (retry with force=true to kill)")


class JobListItem(BaseModel):
    job_id: str
    action: str
    state: str
    outcome: str | None
    results_dir: str
    created_at: float
    parent_job_id: str | None


def list_jobs(state: str | None = None, action: str | None = None, limit: int = 20,
              settings: Settings | None = None) -> list[JobListItem]:
    settings = settings or Settings.from_env()
    store = open_store(settings)
    out = []
    for job in store.query(state=state, action=action, limit=limit):
        if not job.terminal:
            job = refresh(job, settings)
        out.append(JobListItem(job_id=job.id, action=job.action, state=job.state,
                               outcome=job.verdict.get("outcome"), results_dir=job.results_dir,
                               created_at=job.created_at, parent_job_id=job.parent_job_id))
    return out


class LogPage(BaseModel):
    text: str = Field(description="Log lines (progress records split on \\r), secrets redacted.")
    offset: int = Field(description="Byte offset where `text` starts.")
    next_offset: int = Field(description="Pass as offset to read on from here.")
    size: int = Field(description="Current log size in bytes.")
    truncated: bool = Field(description="True when more text matched or exists than was returned.")
    hint: str = Field(description="How to read the next page, or that the log ended.")


def get_job_logs(job_id: str, tail_lines: int | None = None, offset: int | None = None, grep: str | None = None,
                 max_bytes: int = 4096, settings: Settings | None = None) -> LogPage:
    """Page the job log: the tail (default 50 lines), from a byte offset, or lines matching a regex."""
    settings = settings or Settings.from_env()
    job = refresh(open_store(settings).get(check_job_id(job_id)), settings)
    path = job.job_dir(settings.home) / "job.log"
    size = path.stat().st_size if path.exists() else 0
    max_bytes = max(256, min(max_bytes, 6000))
    rx = None
    if grep:
        try:
            rx = re.compile(grep.encode())
        except re.error as exc:
            raise ToolInputError(problem("grep", f"not a valid regex: {exc}", "pass e.g. 'Error|Traceback'")) from exc
    if offset is not None:
        start = max(0, min(offset, size))
    elif rx is None:
        start = max(0, size - 256 * 1024)
    else:
        start = max(0, size - 64 * 1024 * 1024)
    with open(path, "rb") if path.exists() else open("/dev/null", "rb") as fh:
        fh.seek(start)
        data = fh.read(max_bytes * 64 if offset is None else max_bytes)
    lines = [ln for ln in re.split(rb"[\r\n]+", data) if ln.strip()]
    if rx is not None:
        lines = [ln for ln in lines if rx.search(ln)]
    if offset is None:
        lines = lines[-(tail_lines or 50):]
    text, used = [], 0
    for ln in reversed(lines) if offset is None else lines:
        piece = ln.decode(errors="replace")[:1000]
        if used + len(piece) + 1 > max_bytes:
            break
        text.append(piece)
        used += len(piece) + 1
    if offset is None:
        text.reverse()
    truncated = len(text) < len(lines) or (offset is not None and start + len(data) < size)
    next_offset = start + len(data) if offset is not None else size
    hint = (f"more: get_job_logs(job_id='{job_id}', offset={next_offset})" if next_offset < size
            else "end of log" + ("; the job is still running" if not job.terminal else ""))
    return LogPage(text=redact("\n".join(text), job_secrets(job)), offset=start, next_offset=next_offset, size=size,
                   truncated=truncated,
                   hint=hint)
