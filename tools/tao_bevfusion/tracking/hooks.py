"""The tracker's three hooks on the job engine (registered through the `tao_bevfusion.hooks` entry point):

- on_launch: resolve where the job (or study) is tracked and keep it with the job; bad settings -> warnings;
- after_refresh: the poll that just read new output queues it (a trial also queues its study's progress),
  then kicks the background sender - no network on the caller's thread;
- decorate: get_job shows the run (URL, id, writes still queued) and, once, the first failure.
"""

import json
import os
from typing import Any

from tao_bevfusion.core.layout import private_dirs
from tao_bevfusion.jobs import hooks
from tao_bevfusion.jobs.context import AppContext
from tao_bevfusion.jobs.store import Job
from tao_bevfusion.present.summary import JobSummary
from tao_bevfusion.tracking import config as C
from tao_bevfusion.tracking.collect import run_ops
from tao_bevfusion.tracking.outbox import Outbox
from tao_bevfusion.tracking.sender import SENDER

WARNINGS_FILE = "launch_warnings.json"
WARNED_FILE = "warned"
STUDY_MARK = "study"


def install() -> None:
    """Entry point: hang the tracker on the job engine (once per process)."""
    hooks.register(on_launch=on_launch, after_refresh=after_refresh, decorate=decorate)


def on_launch(job: Job, tracking: dict[str, Any] | None, ctx: AppContext) -> list[str]:
    cfg, warnings = C.resolve(tracking, ctx.settings)
    home = ctx.settings.home
    folder = C.export_dir(home, job.id)
    if cfg is not None:
        C.save(home, job.id, cfg)
        if job.kind == "study":
            (folder / STUDY_MARK).touch(mode=0o600)
    if warnings:
        private_dirs(folder)
        fd = os.open(folder / WARNINGS_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(warnings))
    return [f"tracking: {w}" for w in warnings]


def _config(job: Job, home: Any) -> C.TrackingConfig | None:
    """The job's own config; a trial follows its study's (nested under the study's run)."""
    cfg = C.load(home, job.id)
    if job.owner_id and (cfg is None or cfg.parent_job_id is None):
        owner = C.load(home, job.owner_id)
        if owner is not None and not Outbox(C.export_dir(home, job.id)).cursor().started:
            cfg = owner.model_copy(update={"parent_job_id": job.owner_id, "register_best": False})
            C.save(home, job.id, cfg)
    return cfg


def export(job: Job, ctx: AppContext) -> bool:
    """Queue what is new for `job`; True when it is tracked."""
    home = ctx.settings.home
    cfg = _config(job, home)
    if cfg is None:
        return False
    box = Outbox(C.export_dir(home, job.id))
    with box.lock("enqueue") as mine:
        if mine:
            cursor = box.cursor()
            if not cursor.ended:
                if job.kind == "study":
                    from tao_bevfusion.tracking.studyrun import study_ops

                    ops = study_ops(job, cfg, cursor)
                else:
                    ops = run_ops(job, cfg, cursor)
                box.append(ops)
                cursor.queued_ops += len(ops)
                box.save_cursor(cursor)
    if box.size() > box.state().offset:
        SENDER.kick(home, job.id)
    return True


def after_refresh(job: Job, ctx: AppContext) -> None:
    if export(job, ctx) and job.owner_id:
        export(ctx.store.get(job.owner_id), ctx)


def _info(job: Job, home: Any) -> dict[str, Any] | None:
    folder = C.export_dir(home, job.id)
    cfg = C.load(home, job.id)
    launch_warnings = []
    if (folder / WARNINGS_FILE).is_file():
        launch_warnings = json.loads((folder / WARNINGS_FILE).read_text())
    if cfg is None:
        return {"enabled": False, "warnings": launch_warnings} if launch_warnings else None
    box = Outbox(folder)
    state = box.state()
    return {
        "enabled": True,
        "tracker": "mlflow",
        "uri": C.redacted_uri(cfg.uri),
        "experiment": cfg.experiment,
        "run_id": state.run_id,
        "run_url": C.run_url(cfg.uri, state.experiment_id, state.run_id),
        "parent_job_id": cfg.parent_job_id,
        "writes_queued": max(0, box.size() - state.offset) > 0,
        "writes_sent": state.sent_ops,
        "warning": state.gave_up or state.last_error,
        "warnings": launch_warnings,
    }


def decorate(summary: JobSummary, job: Job, ctx: AppContext) -> JobSummary:
    home = ctx.settings.home
    if job.kind == "study":
        export(
            ctx.store.get(job.id), ctx
        )  # get_job(study) does not refresh the study record itself
    info = _info(job, home)
    if info is None:
        return summary
    lines = list(summary.report)
    if info.get("run_url"):
        lines.append(f"MLflow run: {info['run_url']}")
    marker = C.export_dir(home, job.id) / WARNED_FILE
    first = Outbox(C.export_dir(home, job.id)).state().first_error if info["enabled"] else None
    if first and not marker.exists():
        lines.append(f"warning: tracking: {first} (the job is not affected)")
        marker.touch(mode=0o600)
    return summary.model_copy(update={"tracking": info, "report": lines})
