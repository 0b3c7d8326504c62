"""The files a finished run leaves in MLflow: its spec (secrets masked), its summary, and what it produced to
look at - the training curve (train), the AP table as JSON, text and chart (evaluate), the detection pictures
(inference) - or, for a study, its trials, best recommendation, review and plots. Rendered by the sender
(never by a poll); a picture that cannot be drawn is left out, never an error."""

import functools
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tao_bevfusion.core.redact import mask_keys, redact
from tao_bevfusion.core.yamlio import read_recorded_mapping
from tao_bevfusion.jobs.context import AppContext
from tao_bevfusion.jobs.secrets import job_secrets
from tao_bevfusion.jobs.store import Job
from tao_bevfusion.present.summary import summarize
from tao_bevfusion.tracking.studyrun import dumps, study_files

SECRET_KEY = re.compile(r"(encryption_key|api_key|secret|password|token|credential)", re.IGNORECASE)
MAX_FRAMES = 2
_plot_lock = threading.Lock()  # pyplot keeps global state: one picture at a time from this thread


def masked(value: Any, secrets: list[str], key: str = "") -> Any:
    """A copy of the spec with secret-looking keys and every recorded secret value replaced by ***."""
    if isinstance(value, dict):
        return {k: masked(v, secrets, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v, secrets) for v in value]
    if isinstance(value, str) and ((SECRET_KEY.search(key) and value) or value in secrets):
        return "***"
    return value


def _pictures(job: Job, ctx: AppContext) -> dict[str, Callable[[], bytes]]:
    from tao_bevfusion.present.viz import report

    if job.action == "train":
        from tao_bevfusion.present.viz.curve import training_curve_png

        return {"curve.png": lambda: training_curve_png(job)}
    if job.action == "evaluate":
        from tao_bevfusion.present.viz.aptable import ap_chart, ap_table

        return {"ap_table.png": lambda: ap_chart(ap_table(job.findings.log_metrics))}
    if job.action != "inference":
        return {}
    out: dict[str, Callable[[], bytes]] = {"detections/sheet.png": lambda: report.sheet_png(job)[0]}
    summary, _ = report.detections(job)
    frames = [row.frame for row in summary.per_frame] if summary else []
    for frame in frames[:MAX_FRAMES]:
        out[f"detections/bev_{frame}.png"] = functools.partial(report.bev_png, job, frame)
        out[f"detections/camera_{frame}.png"] = functools.partial(report.camera_png, job, frame)
    return out


def _texts(job: Job, ctx: AppContext) -> dict[str, str]:
    secrets = job_secrets(job)
    if job.kind == "study":
        texts = {
            f"study/{p.name}": redact(p.read_text(), secrets)
            for p in study_files(Path(job.results_dir))
        }
        return texts
    spec = masked(mask_keys(read_recorded_mapping(Path(job.spec_path), job.spec_sha256)), secrets)
    texts = {
        "spec.yaml": redact(yaml.safe_dump(spec, sort_keys=False), secrets),
        "summary.json": summarize(job).model_dump_json(indent=1),
    }
    if job.action == "evaluate":
        from tao_bevfusion.present.viz.aptable import ap_table, ap_text

        table = ap_table(job.findings.log_metrics)
        texts["ap_table.json"] = dumps(table.model_dump()["rows"])
        texts["ap_table.txt"] = ap_text(table) + "\n"
    return texts


def write_artifacts(job: Job, ctx: AppContext, folder: Path) -> list[Path]:
    """Write the run's artifact files under `folder` (private); returns what was written."""
    written = []
    for name, text in _texts(job, ctx).items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    renders = _pictures(job, ctx)
    if job.kind == "study":
        from tao_bevfusion.present.viz.study import study_png

        renders = {"study/study.png": lambda: study_png(job, ctx)}
    for name, render in renders.items():
        try:
            with _plot_lock:
                data = render()
        except Exception:  # nothing to draw (no records, no frames): the picture is left out
            continue
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.append(path)
    return written
