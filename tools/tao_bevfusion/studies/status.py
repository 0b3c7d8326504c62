"""What the tools say about a study: get_job(study), cancel_job(study), the study's best checkpoint.

Read from the driver's trials.json snapshot and the trial jobs in the store (never from Optuna, so a
get_job stays fast with hundreds of trials and in processes that never import Optuna).
"""

import json
import time
from pathlib import Path
from typing import Any

from tao_bevfusion.core.errors import InputError, problem
from tao_bevfusion.core.settings import AppContext
from tao_bevfusion.evidence.verdict import Verdict
from tao_bevfusion.jobs.store import Job
from tao_bevfusion.present.summary import SUMMARY_LIMIT, JobSummary, Progress
from tao_bevfusion.studies import milestones
from tao_bevfusion.studies.driver import driver_info, ensure_driver
from tao_bevfusion.studies.models import StudyBest, StudyProgress, StudyStatus, TrialRow
from tao_bevfusion.studies.plan import SNAPSHOT

MAX_LISTED = 40  # trials listed in get_job(study); the rest are counted


def snapshot(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / SNAPSHOT).read_text())
    except (OSError, ValueError):
        return {"trials": [], "best": None, "stopped": None}


def _rows(job: Job, snap: dict[str, Any], ctx: AppContext) -> list[TrialRow]:
    live = {j.id: j for j in ctx.store.query(owner_id=job.id, limit=1000) if not j.terminal}
    rows = []
    for t in snap.get("trials", []):
        row = TrialRow.model_validate(t)
        trial_job = live.get(row.job_id or "")
        if row.state == "running" and trial_job is not None and trial_job.metrics.best_AP11 is not None:
            row.value, row.epoch = trial_job.metrics.best_AP11, trial_job.metrics.best_epoch
        rows.append(row)
    return rows


def _progress(rows: list[TrialRow], total: int) -> StudyProgress:
    p = StudyProgress(total=total)
    for r in rows:
        if r.state == "complete":
            p.completed += 1
        elif r.state == "pruned":
            p.pruned += 1
        elif r.state == "fail":
            p.failed += 1
        else:
            p.running += 1
    return p


def _estimate(job: Job, snap: dict[str, Any], p: StudyProgress, concurrent: int) -> float | None:
    spans = [t["ended"] - t["started"] for t in snap.get("trials", []) if t.get("ended") and t.get("started")
             and t.get("state") == "complete"]
    if job.terminal or not spans:
        return 0.0 if job.terminal else None
    left = max(p.total - p.completed - p.pruned - p.failed, 0)
    return round(sum(spans) / len(spans) * -(-left // max(concurrent, 1)), 1)


def study_status(job: Job, ctx: AppContext) -> StudyStatus:
    from tao_bevfusion.studies.plan import load_plan

    ensure_driver(job, ctx)
    folder = Path(job.results_dir)
    plan = load_plan(folder)
    snap = snapshot(folder)
    rows = _rows(job, snap, ctx)
    p = _progress(rows, plan.trials)
    end = job.finished_at or time.time()
    best_rec = folder / "best_rec.json"
    return StudyStatus(
        algorithm=plan.settings.automl_algorithm, progress=p, trials=rows[-MAX_LISTED:],
        omitted=max(len(rows) - MAX_LISTED, 0), best=StudyBest.model_validate(snap["best"]) if snap.get("best")
        else None, elapsed_seconds=round(end - job.started_at, 1) if job.started_at else None,
        estimate_left_seconds=_estimate(job, snap, p, plan.concurrent), driver=driver_info(folder),
        best_rec=str(best_rec) if best_rec.exists() else None, stopped=snap.get("stopped"))


def study_digest(job: Job, st: StudyStatus) -> str:
    p = st.progress
    head = (f"{job.id} study ({st.algorithm}) {job.state}: {p.completed} completed, {p.pruned} pruned, "
            f"{p.failed} failed, {p.running} running of {p.total}")
    lines = [head]
    if job.verdict:
        lines.append(f"verdict: {str(job.verdict.get('reason'))[:300]}")
    if st.best:
        b = st.best
        lines.append(f"best: trial {b.trial} ({b.job_id}) AP11 {b.value} @ epoch {b.epoch} {b.params}")
    for r in st.trials[-12:]:
        value = f"AP11 {r.value} @ {r.epoch}" if r.value is not None else "no AP yet"
        lines.append(f"  #{r.number}{' (baseline)' if r.baseline else ''} {r.job_id or '-'} {r.state}: {value} "
                     f"{json.dumps(r.params)[:160]}" + (f" - {r.reason[:120]}" if r.reason else ""))
    timing = f"elapsed {st.elapsed_seconds}s"
    if st.estimate_left_seconds:
        timing += f", about {st.estimate_left_seconds}s left"
    lines.append(f"{timing}; driver pid {st.driver.get('pid')} alive={st.driver.get('alive')}")
    if st.stopped:
        lines.append(f"stopped: {st.stopped}")
    return "\n".join(lines)


def study_summary(job: Job, ctx: AppContext) -> JobSummary:
    job = ctx.store.get(job.id)
    st = study_status(job, ctx)
    job = ctx.store.get(job.id)
    if job.terminal and st.best:
        steps = [f"run_action(action='evaluate', data_root='{job.data_root}', parent_job_id='{job.id}')",
                 f"resolve_parent_checkpoint(parent_job_id='{job.id}')",
                 f"get_job(job_id='{job.id}', include_curve=true) for the study plots"]
    elif job.terminal:
        steps = ["read trials[].reason; fix and start a new study"]
    else:
        steps = [f"get_job(job_id='{job.id}') in ~60 s", f"cancel_job(job_id='{job.id}') to stop every trial"]
    summary = JobSummary(
        job_id=job.id, kind="study", action="train", state=job.state, backend=job.backend,
        verdict=Verdict.model_validate(job.verdict) if job.verdict else None, progress=Progress(),
        metrics={"best_AP11": st.best.value, "best_epoch": st.best.epoch} if st.best else {}, errors=[],
        artifacts={"best_rec": st.best_rec, "best_checkpoint": st.best.checkpoint if st.best else None},
        next_steps=steps, results_dir=job.results_dir, log_resource=f"tao-bevfusion://jobs/{job.id}/log",
        digest=study_digest(job, st), study=st)
    while len(summary.model_dump_json()) > SUMMARY_LIMIT and summary.study and len(summary.study.trials) > 1:
        summary.study.omitted += len(summary.study.trials) // 2
        summary.study.trials = summary.study.trials[len(summary.study.trials) // 2:]
    return summary


def cancel_study(job: Job, force: bool, ctx: AppContext) -> tuple[str, str]:
    """Stop every running trial and the study. (state, message)."""
    if job.terminal:
        raise InputError(problem("job_id", f"study {job.id} already ended ({job.state}); there is nothing to "
                                 "cancel", f"get_job(job_id='{job.id}') shows its result"))
    store = ctx.store
    store.update(job.id, cancel_requested=True)
    trials = [t for t in store.query(owner_id=job.id, limit=1000) if not t.terminal]
    for t in trials:
        store.update(t.id, cancel_requested=True)
        backend = ctx.backend(t.backend)
        handle = t.handle or backend.find(t.id)
        if handle:
            backend.cancel(handle, force)
    from tao_bevfusion.jobs.engine import refresh

    deadline = time.monotonic() + 20
    pending = trials
    while pending and time.monotonic() < deadline:
        pending = [t for t in pending if not refresh(store.get(t.id), ctx).terminal]
        if pending:
            time.sleep(0.5)
    store.update(job.id, state="canceled", finished_at=time.time(),
                 verdict={"outcome": "canceled", "reason": f"canceled on request ({len(trials)} running trials "
                          "stopped)"})
    milestones.ended(job.id, "canceled", "canceled on request", None)
    ensure_driver(store.get(job.id), ctx)
    left = f"; {len(pending)} trial(s) still stopping" if pending else ""
    return store.get(job.id).state, f"study canceled, {len(trials) - len(pending)} trial(s) stopped{left}"


def study_best(job: Job) -> tuple[str, int]:
    """(trial job id, best epoch) of a study, or an InputError when no trial completed yet."""
    best = snapshot(Path(job.results_dir)).get("best")
    if not best or not best.get("job_id") or not best.get("epoch"):
        raise InputError(problem("parent_job_id", f"study {job.id} has no completed trial with a validation AP11 "
                                 "yet", f"wait: get_job(job_id='{job.id}') shows its progress"))
    return str(best["job_id"]), int(best["epoch"])
