"""The reading side of a study's export: the parent run its trials nest under.

Read from what the study already keeps on disk (its plan and `trials.json`), never from Optuna: the start
(the AutoML settings and search space as params), one point per finished trial (`study/trial_AP11` and
`study/best_AP11` at step = trial number), and at the end the best trial tagged (on its own run and the
parent's, with the exact checkpoint path), the study's files as artifacts and, with register_best, the
best checkpoint as a Model Registry version.
"""

import json
from pathlib import Path
from typing import Any

from tao_bevfusion.jobs.store import Job
from tao_bevfusion.studies.plan import load_plan
from tao_bevfusion.studies.status import snapshot
from tao_bevfusion.tracking.collect import END_STATUS, _ms, _param
from tao_bevfusion.tracking.config import TrackingConfig
from tao_bevfusion.tracking.outbox import ExportCursor

FINISHED = ("complete", "pruned", "fail")


def study_start(job: Job) -> dict[str, Any]:
    params: dict[str, Any] = {"kind": "study", "data_root": job.data_root, "results_dir": job.results_dir,
                              "backend": job.backend}
    try:
        plan = load_plan(Path(job.results_dir))
    except (OSError, ValueError):
        plan = None
    if plan is not None:
        settings = plan.settings
        params.update(algorithm=settings.automl_algorithm, trials=plan.trials, concurrent=plan.concurrent,
                      max_epochs=settings.automl_max_epochs, reduction_factor=settings.automl_reduction_factor)
        for p in plan.space.params:
            params[f"space.{p.key}"] = p.choices if p.kind == "categorical" else [p.low, p.high, "log" if p.log
                                                                                   else "linear"]
    tags = {"tao.action": "train", "tao.job_id": job.id, "tao.kind": "study", "tao.backend": job.backend,
            "mlflow.source.name": "tao-bevfusion", "mlflow.runName": f"study-{job.id}"}
    return {"op": "start", "job_id": job.id, "start_ms": _ms(job.started_at or job.created_at), "tags": tags,
            "params": {k: _param(v) for k, v in params.items() if v is not None}, "parent": None}


def trial_points(snap: dict[str, Any], cursor: ExportCursor) -> list[list[Any]]:
    out: list[list[Any]] = []
    done = sorted((t for t in snap.get("trials", []) if t.get("state") in FINISHED), key=lambda t: t["number"])
    best: float | None = None
    for t in done:
        value = t.get("value") if t.get("state") == "complete" else None
        if isinstance(value, (int, float)):
            best = value if best is None else max(best, value)
        if t["number"] in cursor.trials_done:
            continue
        cursor.trials_done.append(t["number"])
        ts = int((t.get("ended") or 0) * 1000)
        if isinstance(value, (int, float)):
            out.append(["study/trial_AP11", float(value), ts, t["number"]])
        if best is not None:
            out.append(["study/best_AP11", float(best), ts, t["number"]])
    return out


def end_ops(job: Job, cfg: TrackingConfig, snap: dict[str, Any]) -> list[dict[str, Any]]:
    verdict = job.verdict or {}
    tags = {"tao.state": job.state, "tao.verdict": str(verdict.get("outcome", job.state)),
            "tao.verdict_reason": str(verdict.get("reason", ""))[:1000]}
    ops: list[dict[str, Any]] = [  # the study's word on each trial (a pruned trial may have run to its end)
        {"op": "tag_run", "job_id": t["job_id"], "tags": {"tao.trial_number": str(t.get("number")),
                                                          "tao.trial_state": str(t.get("state"))}}
        for t in snap.get("trials", []) if t.get("job_id")]
    best = snap.get("best")
    if best and best.get("job_id"):
        tags.update({"tao.best_trial": str(best["trial"]), "tao.best_job_id": str(best["job_id"]),
                     "tao.best_checkpoint": str(best.get("checkpoint", ""))[:4000],
                     "tao.best_epoch": str(best.get("epoch"))})
        ops.append({"op": "tag_run", "job_id": best["job_id"], "tags": {
            "tao.best_trial": "true", "tao.best_checkpoint": str(best.get("checkpoint", ""))[:4000]}})
        ops.append({"op": "metrics", "metrics": [["study/best_AP11_final", float(best["value"]),
                                                  _ms(job.finished_at), 0]]})
        if cfg.register_best:
            ops.append({"op": "register", "job_id": best["job_id"], "checkpoint": best.get("checkpoint"),
                        "epoch": best.get("epoch"), "value": best.get("value"),
                        "name": cfg.model_name or f"bevfusion-{cfg.experiment}"[:200]})
    ops += [{"op": "tags", "tags": tags}, {"op": "artifacts", "job_id": job.id},
            {"op": "end", "status": END_STATUS.get(job.state, "FAILED"), "end_ms": _ms(job.finished_at)}]
    return ops


def study_ops(job: Job, cfg: TrackingConfig, cursor: ExportCursor) -> list[dict[str, Any]]:
    ops: list[dict[str, Any]] = []
    if not cursor.started:
        ops.append(study_start(job))
        cursor.started = True
    snap = snapshot(Path(job.results_dir))
    points = trial_points(snap, cursor)
    if points:
        ops.append({"op": "metrics", "metrics": points})
    if job.terminal and not cursor.ended:
        ops += end_ops(job, cfg, snap)
        cursor.ended = True
    return ops


def study_files(folder: Path) -> list[Path]:
    names = ("trials.json", "best_rec.json", "review.json")
    return [folder / n for n in names if (folder / n).is_file()]


def dumps(data: Any) -> str:
    return json.dumps(data, indent=1, default=str)
