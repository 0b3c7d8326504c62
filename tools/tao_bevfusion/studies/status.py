"""A study's status for the tools (progress, trials, best), its cancel, and its best checkpoint.

Read from the driver's trials.json snapshot and the trial jobs in the store (never from Optuna, so a
get_job stays fast with hundreds of trials and in processes that never import Optuna).
"""

import json
import time
from pathlib import Path
from typing import Any

from tao_bevfusion.core.errors import InputError, problem
from tao_bevfusion.core.layout import StudyFiles
from tao_bevfusion.jobs.cancel import stop_run
from tao_bevfusion.jobs.context import AppContext
from tao_bevfusion.jobs.store import Job
from tao_bevfusion.jobs.wait import wait_sync
from tao_bevfusion.studies import milestones
from tao_bevfusion.studies.driver import driver_info, ensure_driver
from tao_bevfusion.studies.models import StudyBest, StudyProgress, StudyStatus, TrialRow
from tao_bevfusion.studies.plan import SNAPSHOT

MAX_LISTED = 40  # trials listed in get_job(study); the rest are counted
CANCEL_WAIT = 20  # seconds a study's cancel waits for its trials to stop


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
        if (
            row.state == "running"
            and trial_job is not None
            and trial_job.metrics.best_AP11 is not None
        ):
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
    spans = [
        t["ended"] - t["started"]
        for t in snap.get("trials", [])
        if t.get("ended") and t.get("started") and t.get("state") == "complete"
    ]
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
    best_rec = folder / StudyFiles.BEST_REC
    return StudyStatus(
        algorithm=plan.settings.automl_algorithm,
        progress=p,
        trials=rows[-MAX_LISTED:],
        omitted=max(len(rows) - MAX_LISTED, 0),
        best=StudyBest.model_validate(snap["best"]) if snap.get("best") else None,
        elapsed_seconds=round(end - job.started_at, 1) if job.started_at else None,
        estimate_left_seconds=_estimate(job, snap, p, plan.concurrent),
        driver=driver_info(folder),
        best_rec=str(best_rec) if best_rec.exists() else None,
        stopped=snap.get("stopped"),
    )


def cancel_study(job: Job, force: bool, ctx: AppContext) -> tuple[str, str]:
    """Stop every running trial and the study. (state, message)."""
    if job.terminal:
        raise InputError(
            problem(
                "job_id",
                f"study {job.id} already ended ({job.state}); there is nothing to cancel",
                f"get_job(job_id='{job.id}') shows its result",
            )
        )
    store = ctx.store
    store.update(job.id, cancel_requested=True)
    trials = [t for t in store.query(owner_id=job.id, limit=1000) if not t.terminal]
    for t in trials:
        stop_run(t, force, ctx)
    deadline = time.monotonic() + CANCEL_WAIT
    pending = [
        t
        for t in trials
        if not wait_sync(t.id, max(0.0, deadline - time.monotonic()), ctx, interval=0.5).terminal
    ]
    ensure_driver(store.get(job.id), ctx)
    deadline = time.monotonic() + 10  # the driver keeps validated trials and writes best_rec.json
    while trials and time.monotonic() < deadline and _still_running(job):
        time.sleep(0.5)
    kept = _kept(job)
    # Ended last (a terminal job takes no more writes); if the driver ended it meanwhile, its verdict stands.
    store.update(
        job.id,
        state="canceled",
        finished_at=time.time(),
        verdict={
            "outcome": "canceled",
            "reason": (
                f"canceled on request; {kept}"
                if kept
                else f"canceled on request ({len(trials)} running trials stopped)"
            ),
        },
    )
    milestones.ended(job.id, "canceled", "canceled on request", None)
    left = f"; {len(pending)} trial(s) still stopping" if pending else ""
    said = (
        f"; {kept}"
        if kept
        else "; no stopped trial had a validated AP11 with its checkpoint (nothing kept)"
    )
    return store.get(
        job.id
    ).state, f"study canceled, {len(trials) - len(pending)} trial(s) stopped{left}{said}"


def _still_running(job: Job) -> bool:
    return any(
        t.get("state") == "running" for t in snapshot(Path(job.results_dir)).get("trials", [])
    )


def _kept(job: Job) -> str | None:
    """What a stopped study kept: its best trial (validated AP11, exact checkpoint) and best_rec.json."""
    snap = snapshot(Path(job.results_dir))
    best = snap.get("best")
    if not best or not (Path(job.results_dir) / "best_rec.json").is_file():
        return None
    done = sum(1 for t in snap.get("trials", []) if t.get("state") == "complete")
    return (
        f"kept the validated AP11 of {done} trial(s); best trial {best['trial']}: AP11 {best['value']} at "
        f"epoch {best['epoch']} ({best['job_id']}), checkpoint {best['checkpoint']}; best_rec.json written"
    )


def study_best(job: Job) -> tuple[str, int]:
    """(trial job id, best epoch) of a study, or an InputError when no trial completed yet."""
    best = snapshot(Path(job.results_dir)).get("best")
    if not best or not best.get("job_id") or not best.get("epoch"):
        raise InputError(
            problem(
                "parent_job_id",
                f"study {job.id} has no completed trial with a validation AP11 yet",
                f"wait: get_job(job_id='{job.id}') shows its progress",
            )
        )
    return str(best["job_id"]), int(best["epoch"])
