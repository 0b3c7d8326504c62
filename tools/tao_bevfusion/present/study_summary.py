"""get_job on a study: its status as the short, bounded summary an agent reads."""

import json

from tao_bevfusion.core.calls import call_text
from tao_bevfusion.evidence.verdict import Verdict
from tao_bevfusion.jobs.context import AppContext
from tao_bevfusion.jobs.store import Job
from tao_bevfusion.present.summary import SUMMARY_LIMIT, JobSummary, Progress, safety_view
from tao_bevfusion.studies.models import StudyStatus
from tao_bevfusion.studies.status import study_status


def study_digest(job: Job, st: StudyStatus) -> str:
    p = st.progress
    head = (
        f"{job.id} study ({st.algorithm}) {job.state}: {p.completed} completed, {p.pruned} pruned, "
        f"{p.failed} failed, {p.running} running of {p.total}"
    )
    lines = [head]
    if job.verdict:
        lines.append(f"verdict: {str(job.verdict.get('reason'))[:300]}")
    if st.best:
        b = st.best
        lines.append(
            f"best: trial {b.trial} ({b.job_id}) AP11 {b.value} @ epoch {b.epoch} {b.params}"
        )
    for r in st.trials[-12:]:
        value = f"AP11 {r.value} @ {r.epoch}" if r.value is not None else "no AP yet"
        lines.append(
            f"  #{r.number}{' (baseline)' if r.baseline else ''} {r.job_id or '-'} {r.state}: {value} "
            f"{json.dumps(r.params)[:160]}" + (f" - {r.reason[:120]}" if r.reason else "")
        )
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
        steps = [
            call_text(
                "run_action",
                {"action": "evaluate", "data_root": job.data_root, "parent_job_id": job.id},
            ),
            call_text("resolve_parent_checkpoint", {"parent_job_id": job.id}),
            call_text("get_job", {"job_id": job.id, "include_curve": True}),
        ]
    elif job.terminal:  # trials[].reason says why each failed
        steps = [call_text("get_job_logs", {"job_id": job.id, "grep": "Error|Traceback|fail"})]
    else:
        steps = [
            call_text("get_job", {"job_id": job.id}),
            call_text("cancel_job", {"job_id": job.id}),
        ]
    summary = JobSummary(
        job_id=job.id,
        kind="study",
        action="train",
        state=job.state,
        backend=job.backend,
        verdict=Verdict.model_validate(job.verdict) if job.verdict else None,
        progress=Progress(),
        metrics={"best_AP11": st.best.value, "best_epoch": st.best.epoch} if st.best else {},
        errors=[],
        artifacts={
            "best_rec": st.best_rec,
            "best_checkpoint": st.best.checkpoint if st.best else None,
        },
        next_steps=steps,
        results_dir=job.results_dir,
        log_resource=f"tao-bevfusion://jobs/{job.id}/log",
        digest=study_digest(job, st),
        study=st,
        safety=safety_view(job),
    )
    while (
        len(summary.model_dump_json()) > SUMMARY_LIMIT
        and summary.study
        and len(summary.study.trials) > 1
    ):
        summary.study.omitted += len(summary.study.trials) // 2
        summary.study.trials = summary.study.trials[len(summary.study.trials) // 2 :]
    return summary
