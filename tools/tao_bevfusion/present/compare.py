"""Runs side by side: the list_jobs row fields (times, key hyperparameters, best AP11), sorting, and a
comparison of several train jobs (a table and one picture with their curves overlaid)."""

import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from tao_bevfusion.core.errors import InputError, problem
from tao_bevfusion.core.yamlio import read_recorded_mapping
from tao_bevfusion.jobs.context import AppContext
from tao_bevfusion.jobs.notes import hyperparameters
from tao_bevfusion.jobs.store import Job, check_job_id

MAX_COMPARE = 8


def iso(stamp: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp)) if stamp else None


def hyper(job: Job) -> dict[str, Any]:
    """The key hyperparameters recorded at launch (older records: read once from the spec)."""
    if job.meta.hyper is not None:
        return job.meta.hyper
    return hyperparameters(read_recorded_mapping(Path(job.spec_path), job.spec_sha256), job.action)


def row_fields(job: Job) -> dict[str, Any]:
    """The JobListItem fields beyond identity and state."""
    start = job.started_at or job.created_at
    end = job.finished_at
    duration = (end or time.time()) - start if job.started_at or end else None
    return {
        "created": iso(job.created_at),
        "ended": iso(end),
        "duration_s": round(duration, 1) if duration is not None else None,
        "hyper": hyper(job),
        "best_AP11": job.metrics.best_AP11,
        "best_epoch": job.metrics.best_epoch,
    }


def sort_key(sort: str) -> Any:
    if sort == "best_AP11":  # jobs without a metric last
        return lambda item: (item.best_AP11 is None, -(item.best_AP11 or 0.0), -item.created_at)
    if sort == "duration":
        return lambda item: (item.duration_s is None, -(item.duration_s or 0.0))
    return lambda item: -item.created_at


class CompareRow(BaseModel):
    job_id: str
    state: str
    parent_job_id: str | None
    hyper: dict[str, Any] = Field(
        description="epochs, lr, weight_decay, batch_size (per GPU), num_gpus."
    )
    best_AP11: float | None
    best_epoch: int | None
    final_AP11: float | None = Field(description="AP11 at the last validated epoch.")
    epochs_done: int | None
    duration_s: float | None


def comparison(ids: list[str], ctx: AppContext) -> list[CompareRow]:
    if len(ids) < 2 or len(ids) > MAX_COMPARE:
        raise InputError(
            problem(
                "compare",
                f"{len(ids)} job ids; compare takes 2 to {MAX_COMPARE} train jobs",
                "pass e.g. compare=['j...', 'j...'] (list_jobs(action='train') lists them)",
            )
        )
    jobs = [ctx.store.get(check_job_id(i, "compare")) for i in dict.fromkeys(ids)]
    other = [j for j in jobs if j.action != "train"]
    if other:
        raise InputError(
            problem(
                "compare",
                f"{other[0].id} is a {other[0].action} job; compare lines up train "
                "runs (their settings and curves)",
                "pass only train job ids; evaluate jobs are "
                "listed with list_jobs(action='evaluate')",
            )
        )
    rows = []
    for j in jobs:
        f = row_fields(j)
        rows.append(
            CompareRow(
                job_id=j.id,
                state=j.state,
                parent_job_id=j.parent_job_id,
                hyper=f["hyper"],
                best_AP11=f["best_AP11"],
                best_epoch=f["best_epoch"],
                final_AP11=j.metrics.AP11,
                epochs_done=j.metrics.epoch or j.progress.epoch,
                duration_s=f["duration_s"],
            )
        )
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if isinstance(value, float) else str(value)[:8]


def table_text(rows: list[CompareRow]) -> str:
    keys = {
        "epochs": "epochs",
        "lr": "lr",
        "weight_decay": "wd",
        "batch_size": "batch",
        "num_gpus": "gpus",
    }
    head = (
        f"{'job':<18} {'state':<9} "
        + " ".join(f"{k:>8}" for k in keys.values())
        + f" {'bestAP11':>8} {'@ep':>4}"
    )
    lines = [head]
    for r in rows:
        vals = " ".join(f"{_cell(r.hyper.get(k)):>8}" for k in keys)
        best = f"{r.best_AP11:8.2f}" if r.best_AP11 is not None else f"{'-':>8}"
        lines.append(f"{r.job_id:<18} {r.state:<9} {vals} {best} {r.best_epoch or '-'!s:>4}")
    return "\n".join(lines)


def overlay_png(ids: list[str], ctx: AppContext) -> bytes:
    """Loss per iteration and val AP11 per epoch of each job, on shared axes."""
    from tao_bevfusion.present.viz.curve import curve_data
    from tao_bevfusion.present.viz.figure import png, pyplot

    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4), dpi=100)
    for jid in dict.fromkeys(ids):
        job = ctx.store.get(jid)
        losses, aps = curve_data(job)
        if losses:
            ax1.plot([x for x, _ in losses], [y for _, y in losses], label=jid)
        if aps:
            ax2.plot([e for e, _, _ in aps], [a for _, a, _ in aps], marker="o", label=jid)
    ax1.set(title="train loss", xlabel="iteration", ylabel="loss")
    ax2.set(title="val AP11 (3D, moderate, strict)", xlabel="epoch", ylabel="AP (0-100)")
    from matplotlib.ticker import MaxNLocator

    ax2.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (ax1, ax2):
        if ax.get_lines():
            ax.legend(fontsize=7)
    fig.tight_layout()
    return png(fig)
