"""Infrastructure retries: a train run lost to the infrastructure resumes as a new attempt of the same job.

Infrastructure = killed by a signal from outside (not the OOM killer), the container/process vanished
(engine restart, node lost), Slurm NODE_FAIL/PREEMPTED/BOOT_FAIL, a pod evicted, an NCCL timeout/hang.
Program failures (spec errors, OOM, wrong image, divergence, limit reached, a cancel) are never retried.
An attempt writes `<spec>.attempt<N>.yaml` beside the spec (train.resume=true from the newest complete
checkpoint, or the same spec when there is none yet), launches it with the job's recorded LaunchRequest,
and appends the ended attempt (cause, exit code, checkpoint) to JobMeta.attempts, which get_job lists.
"""

import fcntl
import time
from pathlib import Path

from tao_bevfusion.backends.base import LaunchRequest
from tao_bevfusion.core.errors import EngineError, InputError
from tao_bevfusion.core.yamlio import load_yaml_file
from tao_bevfusion.evidence.verdict import Verdict
from tao_bevfusion.jobs.context import AppContext
from tao_bevfusion.jobs.safety import last_checkpoint, safety_of
from tao_bevfusion.jobs.store import Job
from tao_bevfusion.specbuild.schema import dump_yaml

# Slurm states, and Kubernetes words for a pod taken away (eviction, preemption, node lost: DisruptionTarget).
SCHEDULER_CAUSES = (
    "NODE_FAIL",
    "PREEMPTED",
    "BOOT_FAIL",
    "Evicted",
    "evicted",
    "NodeLost",
    "DisruptionTarget",
)


def infrastructure_cause(job: Job, verdict: Verdict, backend_error: str | None) -> str | None:
    """Why the run was lost to the infrastructure, or None when it is a program failure (or no failure)."""
    if job.cancel_requested or job.meta.stop_reason:
        return None
    for word in SCHEDULER_CAUSES:
        if backend_error and word in backend_error:
            return f"scheduler: {backend_error[:120]}"
    if "nccl_error" in job.findings.matches and verdict.outcome in ("failed", "killed"):
        return "NCCL timeout or hang"
    if verdict.outcome == "killed" and "out-of-memory" not in verdict.reason:
        return verdict.reason
    if verdict.outcome == "lost":
        return "the container/process vanished (engine restart or node lost)"
    return None


def wanted(job: Job, verdict: Verdict, backend_error: str | None) -> bool:
    safety = safety_of(job)
    if job.action != "train" or safety is None or not job.meta.request:
        return False
    if len(job.meta.attempts) >= safety.max_retries:
        return False
    if job.owner_id:
        # A study decides about its own trials (a vanished one is relaunched into a fresh folder by
        # studies/loop.py); a container killed while being removed must not become an engine retry.
        return False
    return infrastructure_cause(job, verdict, backend_error) is not None


def _container_path(host: Path, req: LaunchRequest) -> str:
    """The checkpoint as the job sees it (results mounted at results_container_dir)."""
    rel = host.relative_to(req.results_dir)
    return str(Path(req.results_container_dir) / rel)


def _attempt_spec(job: Job, req: LaunchRequest, number: int) -> tuple[LaunchRequest, str | None]:
    spec = load_yaml_file(Path(job.spec_path))
    found = last_checkpoint(job)
    if not isinstance(spec, dict) or found is None:
        return req.model_copy(
            update={"attempt": number}
        ), None  # nothing saved yet: the same spec again
    train = spec.setdefault("train", {})
    train["resume"] = True
    train["resume_training_checkpoint_path"] = _container_path(found[1], req)
    host = Path(job.spec_path).with_name(f"{Path(job.spec_path).stem}.attempt{number}.yaml")
    host.write_text(dump_yaml(spec))
    host.chmod(0o644)
    container = str(Path(req.spec_container_path).with_name(host.name))
    update = {"spec_host_path": str(host), "spec_container_path": container, "attempt": number}
    return req.model_copy(update=update), str(found[1])


def relaunch(ctx: AppContext, job: Job, verdict: Verdict, handle: str | None) -> Job | None:
    """Start the next attempt; None when another process already did, or the relaunch failed."""
    folder = job.files(ctx.settings.home).dir
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "retry.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        job = ctx.store.get(job.id)
        if job.terminal or (handle and job.handle != handle):
            return job  # another process settled this end already
        return _relaunch_locked(ctx, job, verdict, handle)


def _relaunch_locked(ctx: AppContext, job: Job, verdict: Verdict, handle: str | None) -> Job | None:
    number = len(job.meta.attempts) + 2  # attempt 1 was the launch
    cause = infrastructure_cause(job, verdict, None) or verdict.reason
    req = LaunchRequest.model_validate(job.meta.request)
    ended = {
        "attempt": number - 1,
        "ended_at": time.time(),
        "cause": cause[:300],
        "exit_code": verdict.exit_code,
        "epoch": job.progress.epoch,
    }
    backend = ctx.backend(job.backend)
    try:
        req, resumed_from = _attempt_spec(job, req, number)
        if handle:
            backend.cleanup(handle)
        plan = backend.plan(req)
        new_handle = backend.submit(plan)
    except (InputError, EngineError, OSError) as exc:
        ended["retry_failed"] = str(exc)[:200]
        ctx.store.update(
            job.id, meta=job.meta.model_copy(update={"attempts": [*job.meta.attempts, ended]})
        )
        return None
    ended["resumed_from"] = resumed_from
    ended["next_attempt_started_at"] = time.time()
    meta = job.meta.model_copy(update={"attempts": [*job.meta.attempts, ended]})
    # A job resubmitted to a scheduler waits in its queue again: pending until it starts.
    state = backend.capabilities.state_after_submit
    ctx.store.update(job.id, handle=new_handle, meta=meta, state=state, plan=plan.model_dump())
    return ctx.store.get(job.id)
