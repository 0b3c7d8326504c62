"""The reading side of a run's export: what a poll found new becomes ops in the job's outbox.

One poll, under the job's enqueue lock: the run's start (params from the spec that ran, tags) the first
time; every status.json record appended since the export cursor (train loss and lr per iteration at step =
global iteration, validation AP11/AP40 at step = epoch); the KITTI AP table per difficulty when the log
gained one; and once the job has ended, its verdict, its artifacts and its end. Nothing here talks to the
tracker: the sender does, later.
"""

import datetime
import functools
import json
import math
from pathlib import Path
from typing import Any

from tao_bevfusion.core import layout
from tao_bevfusion.core.redact import redact_bytes
from tao_bevfusion.core.yamlio import read_recorded_mapping
from tao_bevfusion.evidence.safeio import read_regular
from tao_bevfusion.evidence.status import MAX_READ, StatusRecord
from tao_bevfusion.jobs.secrets import job_secrets
from tao_bevfusion.jobs.store import Job
from tao_bevfusion.present.viz.aptable import KEY as AP_KEY
from tao_bevfusion.tracking.config import TrackingConfig
from tao_bevfusion.tracking.outbox import ExportCursor

END_STATUS = {
    "succeeded": "FINISHED",
    "failed": "FAILED",
    "canceled": "KILLED",
    "unknown": "FAILED",
}


def _ms(stamp: float | None) -> int:
    return int((stamp or 0.0) * 1000)


def _param(value: Any) -> str:
    return (value if isinstance(value, str) else json.dumps(value))[:6000]


def run_params(job: Job) -> dict[str, str]:
    """The settings of the spec that ran: lr, weight decay, batch size, epochs, nodes x GPUs, image, data."""
    spec = read_recorded_mapping(Path(job.spec_path), job.spec_sha256) if job.kind == "run" else {}
    section = spec.get(job.action) if isinstance(spec.get(job.action), dict) else {}
    hyper = dict(job.meta.hyper or {})
    nodes = int(section.get("num_nodes", 1) or 1) if isinstance(section, dict) else 1
    gpus = hyper.get("num_gpus")
    params: dict[str, Any] = {
        "action": job.action,
        "learning_rate": hyper.get("lr"),
        "weight_decay": hyper.get("weight_decay"),
        "batch_size": hyper.get("batch_size"),
        "epochs": hyper.get("epochs"),
        "num_nodes": nodes,
        "num_gpus": gpus,
        "nodes_x_gpus": f"{nodes}x{gpus}" if gpus is not None else None,
        "image": job.meta.image,
        "data_root": job.data_root,
        "results_dir": job.results_dir,
        "backend": job.backend,
    }
    if isinstance(section, dict) and section.get("checkpoint"):
        params["checkpoint"] = section["checkpoint"]
    secrets = job_secrets(job)
    return {k: _param(v) for k, v in params.items() if v is not None and _param(v) not in secrets}


def run_tags(job: Job) -> dict[str, str]:
    tags = {
        "tao.action": job.action,
        "tao.job_id": job.id,
        "tao.backend": job.backend,
        "tao.kind": job.kind,
        "mlflow.source.name": "tao-bevfusion",
        "mlflow.runName": f"{job.action}-{job.id}",
    }
    if job.parent_job_id:
        tags["tao.parent_job_id"] = job.parent_job_id
    if job.owner_id:
        tags["tao.study_id"] = job.owner_id
    if job.meta.lineage:
        tags["tao.lineage"] = job.meta.lineage[:500]
    return tags


def start_op(job: Job, cfg: TrackingConfig) -> dict[str, Any]:
    return {
        "op": "start",
        "job_id": job.id,
        "start_ms": _ms(job.started_at or job.created_at),
        "tags": run_tags(job),
        "params": run_params(job),
        "parent": cfg.parent_job_id,
    }


@functools.lru_cache(maxsize=256)
def _parse_stamp(date: str, clock: str) -> int | None:
    try:
        return int(
            datetime.datetime.strptime(f"{date} {clock}", "%m/%d/%Y %H:%M:%S").timestamp() * 1000
        )
    except (ValueError, OverflowError):
        return None


def _stamp(raw: dict[str, Any], fallback: int) -> int:
    """The record's own date/time (local, as 5.5 writes it), so a re-read gives the same timestamp."""
    date, clock = raw.get("date"), raw.get("time")
    if not isinstance(date, str) or not isinstance(clock, str):
        return fallback
    parsed = _parse_stamp(date[:20], clock[:20])
    return fallback if parsed is None else parsed


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def record_metrics(raw: dict[str, Any], fallback: int) -> list[list[Any]]:
    """[key, value, timestamp ms, step] of one status.json record."""
    rec = StatusRecord.model_validate(raw)
    ts = _stamp(raw, fallback)
    out: list[list[Any]] = []
    if rec.is_train and rec.cur_iter is not None:
        out += [
            [f"train/{k}", v, ts, rec.cur_iter]
            for k in ("loss", "lr")
            if _finite(v := getattr(rec, k))
        ]
    elif rec.is_validation and rec.epoch is not None:
        out += [
            [f"val/{k}", v, ts, rec.epoch]
            for k in ("AP11", "AP40")
            if _finite(v := getattr(rec, k))
        ]
    return out


def status_metrics(job: Job, offset: int) -> tuple[list[list[Any]], int]:
    """Metrics of every complete status.json record from `offset` (all of them when the job has ended)."""
    path = layout.status_path(job.action, Path(job.results_dir), Path(job.data_root))
    out: list[list[Any]] = []
    fallback = _ms(job.started_at or job.created_at)
    while True:
        got = read_regular(path, offset, MAX_READ)
        if got is None:
            return out, offset
        size, data = got
        if size < offset:
            offset = 0  # rotated or truncated: read anew (exact repeats are ignored by the store)
        data = data[: data.rfind(b"\n") + 1]
        for line in redact_bytes(data, job_secrets(job)).splitlines():
            try:
                raw = json.loads(line)
            except (ValueError, RecursionError):
                continue
            if isinstance(raw, dict):
                out += record_metrics(raw, fallback)
        offset += len(data)
        if not job.terminal or not data or offset >= size:
            return out, offset


def ap_metrics(job: Job, cursor: ExportCursor) -> list[list[Any]]:
    """The log's per-difficulty KITTI AP (3D/BEV/2D x AP11/AP40 x easy/moderate/hard), when it changed."""
    cells = {k: v for k, v in job.findings.log_metrics.items() if AP_KEY.match(k) and _finite(v)}
    if not cells:
        return []
    step = (
        job.metrics.epoch
        if job.action == "train"
        else (job.meta.checkpoint_choice or {}).get("epoch")
    )
    step = int(step) if isinstance(step, int) else 0
    signature = json.dumps([step, sorted(cells.items())])
    if signature == cursor.ap_signature:
        return []
    cursor.ap_signature = signature
    ts = _ms(job.started_at or job.created_at) + step
    return [[f"kitti/{key}", value, ts, step] for key, value in sorted(cells.items())]


def end_ops(job: Job) -> list[dict[str, Any]]:
    verdict = job.verdict or {}
    tags = {
        "tao.state": job.state,
        "tao.verdict": str(verdict.get("outcome", job.state)),
        "tao.verdict_reason": str(verdict.get("reason", ""))[:1000],
    }
    return [
        {"op": "tags", "tags": tags},
        {"op": "artifacts", "job_id": job.id},
        {
            "op": "end",
            "status": END_STATUS.get(job.state, "FAILED"),
            "end_ms": _ms(job.finished_at or job.updated_at),
        },
    ]


def run_ops(job: Job, cfg: TrackingConfig, cursor: ExportCursor) -> list[dict[str, Any]]:
    """The ops this poll adds for a run job; `cursor` is advanced in place."""
    ops: list[dict[str, Any]] = []
    if not cursor.started:
        ops.append(start_op(job, cfg))
        cursor.started = True
    metrics, cursor.status_offset = status_metrics(job, cursor.status_offset)
    metrics += ap_metrics(job, cursor)
    if metrics:
        ops.append({"op": "metrics", "metrics": metrics})
    if job.terminal and not cursor.ended:
        ops += end_ops(job)
        cursor.ended = True
    return ops
