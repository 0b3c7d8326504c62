"""The short, correct answer an agent gets about a job: state, verdict, progress, metrics, errors, next steps.

Everything here is bounded (lists capped, strings trimmed) so a summary stays under 8 KB whatever the log.
"""

import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from tao_bevfusion.core import layout
from tao_bevfusion.core.calls import call_text, parse_call
from tao_bevfusion.core.limits import RESULT_LIMIT
from tao_bevfusion.core.redact import redact
from tao_bevfusion.core.states import ACTIVE_STATES, SUCCEEDED_OUTCOMES, JobState
from tao_bevfusion.evidence.patterns import ErrorMatch, error_matches
from tao_bevfusion.evidence.verdict import Verdict
from tao_bevfusion.jobs import stall
from tao_bevfusion.jobs.secrets import job_secrets
from tao_bevfusion.jobs.store import Job
from tao_bevfusion.studies.models import StudyStatus

SUMMARY_METRICS = ("3D_AP11_moderate_strict", "3D_AP40_moderate_strict", "BEV_AP11_moderate_strict",
                   "BEV_AP40_moderate_strict")

SUMMARY_LIMIT = RESULT_LIMIT


class Progress(BaseModel):
    epoch: int | None = Field(default=None, description="Current (1-based) epoch, from the mmengine log.")
    max_epochs: int | None = Field(default=None, description="train.num_epochs of the spec.")
    iteration: int | None = Field(default=None, description="Global iteration (status.json cur_iter).")
    iters_per_epoch: int | None = None
    loss: float | None = None
    lr: float | None = None
    eta: str | None = None


class JobSummary(BaseModel):
    job_id: str = Field(description="The job.")
    kind: str = Field(default="run", description="run (one action) or study (an AutoML search; see `study`).")
    action: str = Field(description="dataset_convert, train, evaluate or inference.")
    state: JobState = Field(description="pending, running, succeeded, failed, canceled or unknown.")
    backend: str = Field(description="docker or local.")
    verdict: Verdict | None = Field(default=None, description="Set once the job has ended.")
    progress: Progress = Field(description="Where the run is (train: epoch of max_epochs, iteration, loss).")
    metrics: dict[str, Any] = Field(description="AP11/AP40 (0-100 scale): latest, best and per epoch.")
    errors: list[ErrorMatch] = Field(description="Known error signatures found, with evidence and remedy.")
    artifacts: dict[str, Any] = Field(description="Checkpoints and outputs found on the host.")
    next_steps: list[str] = Field(description="Calls to make next.")
    results_dir: str = Field(description="Host folder with the job's outputs.")
    parent_job_id: str | None = Field(default=None, description="The train job whose checkpoint this job used.")
    log_resource: str = Field(description="MCP resource URI of the full log (page it with get_job_logs).")
    digest: str = Field(description="One-line human summary.")
    study: StudyStatus | None = Field(default=None, description=(
        "kind=study only: progress, trials, best (with its exact checkpoint), timing and the driver."))
    detections: dict[str, Any] | None = Field(default=None, description=(
        "inference: frames, boxes above the threshold, score distribution, top boxes (LiDAR x, y, z_bottom, "
        "size, yaw, score). Pictures: get_job(frames=[...]) or resource .../bev/{frame}.png."))
    evaluation: dict[str, Any] | None = Field(default=None, description=(
        "evaluate: the checkpoint evaluated (path, epoch, how chosen) and the KITTI AP table (AP11/AP40 x "
        "3D/BEV/2D x strict/loose, easy/moderate/hard)."))
    report: list[str] = Field(default_factory=list, description="Text lines of the above, as the digest shows them.")
    elapsed_seconds: float | None = Field(default=None, description="Run time so far (or in total), seconds.")
    stall: str | None = Field(default=None, description="Set when a running job has been silent too long: the "
                              "likely cause (TAO_BEVFUSION_STALL_SECONDS).")
    safety: dict[str, Any] | None = Field(default=None, description=(
        "Run safety: limits, on_divergence, max_retries, keep_checkpoints; attempts (earlier attempts of this "
        "job with their causes), freed_bytes (checkpoint retention), waiting (why a pending job waits)."))


def _checkpoints(job: Job) -> list[str]:
    if job.action != "train":
        return []
    return [p.name for p in layout.epoch_checkpoints(layout.train_dir(Path(job.results_dir))).values()][-20:]


def _metrics(job: Job) -> dict[str, Any]:
    m = {k: v for k, v in job.metrics.model_dump(exclude={"history"}).items() if v is not None}
    if job.metrics.history:
        m["per_epoch"] = [h.model_dump() for h in job.metrics.history[-20:]]
    log_metrics = job.findings.log_metrics
    for key, value in log_metrics.items():
        if key.endswith(SUMMARY_METRICS):
            m[key] = value
    if job.action == "evaluate":
        for name in ("AP11", "AP40"):
            found = next((k for k in log_metrics if k.endswith(f"_3D_{name}_moderate_strict")), None)
            if found:
                m[name] = log_metrics[found]
    return m


def _launch_lines(job: Job) -> list[str]:
    """What the launch said (lineage, warnings), kept short: get_job is polled."""
    lines = [job.meta.lineage] if job.meta.lineage else []
    warned = job.meta.warnings or []
    if warned:
        lines.append(warned[0] + (f" (+{len(warned) - 1} more launch warnings)" if len(warned) > 1 else ""))
    return [line[:400] for line in lines]


def _evaluated_path(job: Job) -> str | None:
    from tao_bevfusion.present.viz.report import evaluated_checkpoint

    found = evaluated_checkpoint(job)
    return str(found["path"]) if found else None


def next_steps(job: Job, errors: list[ErrorMatch]) -> list[str]:
    """Calls that can be made as written: `tool({json arguments})`, one call per entry."""
    jid, root = job.id, job.data_root
    if job.state in ACTIVE_STATES:
        return [call_text("get_job", {"job_id": jid}), call_text("cancel_job", {"job_id": jid})]
    outcome = job.verdict.get("outcome")
    if outcome in SUCCEEDED_OUTCOMES:
        steps = _success_steps(job)
        if outcome == "succeeded_with_teardown_crash":
            steps.insert(0, call_text("get_job", {"job_id": jid}))  # verdict.usable_artifacts: the exact files
        return steps
    steps = [e.next_call for e in errors if e.next_call and e.severity == "error"][:2]
    if job.verdict.get("next_call"):
        steps.insert(0, str(job.verdict["next_call"]))  # diverged / limit_reached: the remedy call (jobs/safety.py)
    # A resume would crash the same way when the data is the cause (an empty val split).
    data_cause = any(e.pattern == "class_not_person" for e in errors)
    if job.action == "train" and _checkpoints(job) and outcome in ("failed", "killed", "canceled") and not data_cause:
        steps.append(call_text("run_action", {"action": "train", "data_root": root, "parent_job_id": jid,
                                              "resume": True, "automl_policy": "off"}))
    steps.append(call_text("get_job_logs", {"job_id": jid, "grep": "Error|Traceback"}))
    return steps


def render_next_call(template: str, job: Job) -> str | None:
    """A knowledge-base next_call with the failed job's own values ($root, $job, ...) filled in."""
    try:
        tool, args = parse_call(template)
    except ValueError:
        return None
    hyper = job.meta.hyper or {}
    batch = hyper.get("batch_size")
    values: dict[str, Any] = {"$root": job.data_root, "$action": job.action, "$job": job.id,
                              "$spec": job.spec_path, "$num_gpus": hyper.get("num_gpus") or 1,
                              "$half_batch": max(1, int(batch) // 2) if isinstance(batch, int) else 1}
    if template.count("$half_batch") and isinstance(batch, int) and batch <= 1:
        # Already at batch size 1: halving is no remedy; mixed precision is the next lever.
        args["overrides"] = {"train.optimizer.wrapper_type": "AmpOptimWrapper"}
    filled = json.loads(json.dumps(args), object_hook=lambda d: {k: values.get(v, v) if isinstance(v, str) else v
                                                                  for k, v in d.items()})
    return call_text(tool, filled)


def current_remedy(e: ErrorMatch, job: Job) -> str:
    """The remedy in the figures of the spec that ran (an OOM at batch size 1 is not told to lower it)."""
    batch = (job.meta.hyper or {}).get("batch_size")
    if e.pattern in ("cuda_oom", "worker_sigkill") and isinstance(batch, int):
        if batch <= 1:
            return ("batch_size is already 1 per GPU: enable mixed precision (overrides "
                    "{'train.optimizer.wrapper_type': 'AmpOptimWrapper'}), lower num_workers, or use GPUs with "
                    "more memory")
        return f"lower batch_size from {batch} to {max(1, batch // 2)} per GPU (or use AmpOptimWrapper / more GPUs)"
    return e.remedy


def _success_steps(job: Job) -> list[str]:
    jid, root = job.id, job.data_root
    if job.action == "dataset_convert":
        return [call_text("check_dataset", {"data_root": root, "action": "train"}),
                call_text("run_action", {"action": "train", "data_root": root})]
    if job.action == "train":
        return [call_text("resolve_parent_checkpoint", {"parent_job_id": jid}),
                call_text("run_action", {"action": "evaluate", "data_root": root, "parent_job_id": jid})]
    if job.action == "evaluate":
        source = ({"parent_job_id": job.parent_job_id} if job.parent_job_id
                  else {"checkpoint": _evaluated_path(job)})
        return [call_text("run_action", {"action": "inference", "data_root": root, **source})]
    return [call_text("get_job", {"job_id": jid, "include_pictures": True})]


def safety_view(job: Job) -> dict[str, Any] | None:
    meta = job.meta
    if not meta.safety and not meta.freed_bytes:
        return None
    view: dict[str, Any] = {k: v for k, v in (meta.safety or {}).items() if v is not None and k != "gpus"}
    extra = {"attempts": meta.attempts[-10:] or None, "freed_bytes": meta.freed_bytes,
             "waiting": meta.waiting if job.state == "pending" else None}
    view.update({k: v for k, v in extra.items() if v})
    return view


def _digest(job: Job, progress: Progress, metrics: dict[str, Any]) -> str:
    head = f"{job.id} {job.action} {job.state}"
    if job.verdict:
        outcome = job.verdict.get("outcome")
        head += (f" [{outcome}]" if outcome != job.state else "") + f" - {str(job.verdict.get('reason'))[:240]}"
    parts = [head]
    if progress.epoch is not None:
        parts.append(f"epoch {progress.epoch}/{progress.max_epochs or '?'}")
    if progress.iteration is not None:
        parts.append(f"iter {progress.iteration}")
    if progress.loss is not None:
        parts.append(f"loss {progress.loss:.4g}")
    if metrics.get("AP11") is not None:
        parts.append(f"AP11 {metrics['AP11']}")
    if metrics.get("best_AP11") is not None:
        parts.append(f"(best {metrics['best_AP11']} @ epoch {metrics.get('best_epoch')})")
    left = time_left(job, progress)
    if left is not None:
        parts.append(f"about {_duration(left)} left")
    elif job.state == "running" and job.action == "train":
        parts.append("time left unknown until the first iterations are logged")
    return ", ".join(parts)


def time_left(job: Job, progress: Progress) -> int | None:
    """A running job's remaining seconds: from its own pace (elapsed / iterations done), else the log's eta."""
    if job.state != "running":
        return None
    elapsed = stall.elapsed(job)
    total = (progress.max_epochs or 0) * (progress.iters_per_epoch or 0)
    if progress.iteration and total and elapsed:
        return max(0, int(elapsed * (total - progress.iteration) / progress.iteration))
    if progress.eta and (m := re.fullmatch(r"(?:(\d+) days?, )?(\d+):(\d\d):(\d\d)", progress.eta.strip())):
        days, h, mi, sec = (int(g or 0) for g in m.groups())
        return ((days * 24 + h) * 60 + mi) * 60 + sec
    return None


def _duration(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s"
    return f"{seconds // 60} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def summarize(job: Job, stall_seconds: int | None = None) -> JobSummary:
    p = job.progress
    progress = Progress(epoch=p.epoch, max_epochs=job.meta.num_epochs if job.action == "train" else None,
                        iteration=p.cur_iter, iters_per_epoch=p.iters_per_epoch, loss=p.loss, lr=p.lr, eta=p.eta)
    if progress.iteration and progress.iters_per_epoch:
        # The log epoch lags by the record still being written; cur_iter / iters_per_epoch does not
        # (docs/container-contract.md §4.5).
        derived = -(-progress.iteration // progress.iters_per_epoch)
        progress.epoch = max(progress.epoch or 0, min(derived, progress.max_epochs or derived))
    if job.state == "succeeded" and job.action == "train":
        progress.epoch = progress.max_epochs
    errors = error_matches(job.findings.matches, job.action)
    secrets = job_secrets(job)
    for e in errors:
        e.evidence = redact(e.evidence, secrets)
        e.remedy = current_remedy(e, job)
        e.next_call = render_next_call(e.next_call, job) if e.next_call else None
    if job.state == "succeeded":
        errors = [e for e in errors if e.severity != "error"]
    metrics = _metrics(job)
    verdict = Verdict.model_validate(job.verdict) if job.verdict else None
    if verdict:
        verdict.usable_artifacts = verdict.usable_artifacts[:12]
        verdict.missing_artifacts = verdict.missing_artifacts[:8]
    artifacts: dict[str, Any] = {"checkpoints": _checkpoints(job)} if job.action == "train" else {}
    choice = job.meta.checkpoint_choice
    if choice:  # the lineage this job was launched with (docs/container-contract.md §10.1 rule 7)
        artifacts["parent_checkpoint"] = {k: choice.get(k) for k in ("path", "epoch", "method")}
    if job.findings.skipped_bytes:
        artifacts["log_note"] = f"{job.findings.skipped_bytes} early log bytes were not scanned"
    from tao_bevfusion.present.viz import report

    found, found_lines = report.detections(job)
    evaluated, eval_lines = report.evaluation(job)
    summary = JobSummary(job_id=job.id, action=job.action, state=job.state, backend=job.backend, verdict=verdict,
                         progress=progress, metrics=metrics, errors=errors, artifacts=artifacts,
                         next_steps=next_steps(job, errors), results_dir=job.results_dir,
                         parent_job_id=job.parent_job_id, log_resource=f"tao-bevfusion://jobs/{job.id}/log",
                         digest=_digest(job, progress, metrics),
                         detections=found.model_dump() if found else None, evaluation=evaluated,
                         report=(_launch_lines(job) + found_lines + eval_lines)[:40],
                         elapsed_seconds=stall.elapsed(job), stall=stall.stall_note(job, stall_seconds),
                         safety=safety_view(job))
    if summary.stall:
        summary.digest += f"; {summary.stall}"
        summary.next_steps = stall.stall_steps(job) + summary.next_steps[:1]
    while len(summary.model_dump_json()) > SUMMARY_LIMIT and (summary.errors or summary.metrics.get("per_epoch")):
        if summary.metrics.get("per_epoch"):
            summary.metrics["per_epoch"] = summary.metrics["per_epoch"][len(summary.metrics["per_epoch"]) // 2 + 1:]
        else:
            summary.errors.pop()
    return summary
