"""What an inference or evaluate job shows: the detection summary, the AP table, the checkpoint it used,
and its pictures (BEV per frame, camera projection, contact sheet, AP chart, training curve).

Everything here reads the job's own folders (preds, status.json, spec); nothing is drawn from a file
whose shape is unexpected: such a file is named with what was found instead.
"""

import functools
from contextlib import suppress
from pathlib import Path
from typing import Any

from tao_bevfusion.core import layout
from tao_bevfusion.core.caller import check_caller
from tao_bevfusion.core.calls import call_text
from tao_bevfusion.core.errors import InputError, problem
from tao_bevfusion.core.yamlio import read_mapping, read_recorded_mapping
from tao_bevfusion.evidence.predictions import (
    DetectionSummary,
    frame_path,
    list_frames,
    preds_dir,
    read_frame,
    summarize,
    summary_text,
)
from tao_bevfusion.jobs.store import Job
from tao_bevfusion.present.viz.aptable import ap_table, ap_text

MAX_PICTURE_FRAMES = 4  # frames per get_job call: each frame is a BEV and a camera picture
SHEET_FRAMES = 50
DEFAULT_THRESHOLD = 0.5


def threshold(job: Job) -> float:
    return _threshold(job.spec_path, _mtime(Path(job.spec_path)))


@functools.lru_cache(maxsize=64)
def _threshold(spec_path: str, _mtime_ns: int) -> float:
    value = (read_mapping(Path(spec_path)).get("inference") or {}).get("conf_threshold")
    return (
        float(value)
        if isinstance(value, int | float) and not isinstance(value, bool)
        else DEFAULT_THRESHOLD
    )


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return -1


@functools.lru_cache(maxsize=64)
def _detection_summary(folder: str, _mtime_ns: int, at: float) -> DetectionSummary:
    """Cached on the folder's mtime: get_job is polled, and re-reading thousands of prediction files on every
    poll would be the call's whole cost. The inferencer adds files (which changes the mtime), never edits one."""
    return summarize(Path(folder), at, top_n=5, max_frames=20)


def job_preds(job: Job) -> Path:
    if job.action != "inference":
        raise InputError(
            problem(
                "job_id",
                f"{job.id} is a {job.action} job; detections come from inference",
                "pass an inference job id (list_jobs(action='inference'))",
            )
        )
    return preds_dir(Path(job.results_dir))


def detections(job: Job) -> tuple[DetectionSummary | None, list[str]]:
    """The detection summary of an inference job (None while there is nothing to read), and its text lines."""
    if job.action != "inference" or job.state == "pending":
        return None, []
    try:
        folder = job_preds(job)
        summary = _detection_summary(str(folder), _mtime(folder), threshold(job))
    except InputError as exc:
        if job.state == "running":
            return None, []
        return None, [f"detections: none to show - {exc.problems[0].message}"]
    lines = summary_text(summary, rows=3).splitlines()
    if summary.per_frame:
        first = summary.per_frame[0].frame
        call = call_text("get_job", {"job_id": job.id, "frames": [first]})
        lines.append(f"pictures: {call} or resource tao-bevfusion://jobs/{job.id}/bev/{first}.png")
    return summary, lines


def evaluated_checkpoint(job: Job) -> dict[str, Any] | None:
    """Which .pth an evaluate/inference job loaded: path, epoch and how it was chosen."""
    choice = job.meta.checkpoint_choice
    if choice:
        return {
            "path": choice.get("path"),
            "epoch": choice.get("epoch"),
            "how": f"{choice.get('method')} (parent {job.parent_job_id})",
        }
    given = (read_recorded_mapping(Path(job.spec_path), job.spec_sha256).get(job.action) or {}).get(
        "checkpoint"
    )
    if not isinstance(given, str) or not given:
        return None
    host = given
    for m in job.plan.get("mounts", []):
        container = str(m.get("container", ""))
        if container and (given == container or given.startswith(container.rstrip("/") + "/")):
            host = str(m.get("host", "")) + given[len(container) :]
            break
    return {
        "path": host,
        "epoch": layout.epoch_number(Path(host).name),
        "how": "given as checkpoint=",
    }


def evaluation(job: Job) -> tuple[dict[str, Any] | None, list[str]]:
    """The AP table of an evaluate job plus the checkpoint it evaluated, and the text lines for the digest."""
    if job.action != "evaluate":
        return None, []
    table = ap_table(job.findings.log_metrics)
    ckpt = evaluated_checkpoint(job)
    lines = []
    if ckpt:
        lines.append(f"evaluated checkpoint: {ckpt['path']} (epoch {ckpt['epoch']}, {ckpt['how']})")
    if table.rows:
        lines += ap_text(table).splitlines()
    elif job.terminal:
        lines.append("AP table: no AP values in the log")
    return {"checkpoint": ckpt, "ap_table": table.model_dump()["rows"]}, lines


def _split_of(root: Path, frame: str) -> str:
    for split in ("training", "testing"):
        if (root / split / "velodyne" / f"{frame}.bin").exists() or (
            root / split / "calib" / f"{frame}.txt"
        ).exists():
            return split
    return "training"


def scene(job: Job, frame: str) -> Any:
    """One frame of an inference job as a Scene (points, predictions, ground truth, calib, image)."""
    check_caller()  # a frame is the unit of picture work: stop here once the caller went away
    from tao_bevfusion.present.viz.scene import load_scene, require_frame

    folder = job_preds(job)
    path = frame_path(folder, frame)
    if not path.is_file():
        require_frame(list_frames(folder), frame)
    root = Path(job.data_root)
    return load_scene(root, frame, read_frame(path), threshold(job), _split_of(root, frame))


def bev_png(job: Job, frame: str) -> bytes:
    from tao_bevfusion.present.viz.bev import render_bev

    return render_bev(scene(job, frame)).png


def camera_png(job: Job, frame: str) -> bytes:
    from tao_bevfusion.present.viz.camera import render_camera

    return render_camera(scene(job, frame)).png


def sheet_png(job: Job, limit: int = SHEET_FRAMES) -> tuple[bytes, list[str]]:
    """Contact sheet of the first `limit` readable frames; unreadable files are named, not drawn."""
    from tao_bevfusion.present.viz.bev import contact_sheet

    folder = job_preds(job)
    frames, skipped = list_frames(folder), []
    scenes: list[Any] = []
    for frame in frames:
        if len(scenes) >= limit:
            break
        try:
            scenes.append(scene(job, frame))
        except InputError as exc:
            skipped.append(f"{frame}: {exc.problems[0].message}")
    if not scenes:
        raise InputError(
            problem(
                str(folder),
                f"no readable predictions ({len(frames)} files; " + "; ".join(skipped[:3]) + ")",
                "check the inference log",
            ),
            headline="no predictions",
        )
    return contact_sheet(scenes), skipped


def pictures(job: Job, frames: list[str] | None) -> list[tuple[str, bytes]]:
    """The pictures get_job returns: inference frames (BEV + camera each) or a contact sheet; the AP chart of
    an evaluate job; the training curve of a train job. Raises InputError for a bad frame or no predictions."""
    if job.action == "train":
        from tao_bevfusion.present.viz.curve import training_curve_png

        return [("curve.png", training_curve_png(job))]
    if job.action == "evaluate":
        from tao_bevfusion.present.viz.aptable import ap_chart

        table = ap_table(job.findings.log_metrics)
        if not table.rows:
            raise InputError(
                problem(
                    "job_id",
                    "no AP values in this evaluate job's log yet",
                    "wait for the job to end (get_job), then ask again",
                )
            )
        return [("ap.png", ap_chart(table, title=f"{job.id} KITTI AP (strict)"))]
    if job.action != "inference":
        raise InputError(
            problem(
                "job_id",
                f"{job.action} jobs have no pictures",
                "pass a train, evaluate or inference job",
            )
        )
    if not frames:
        sheet, _ = sheet_png(job)
        return [("sheet.png", sheet)]
    if len(frames) > MAX_PICTURE_FRAMES:
        raise InputError(
            problem(
                "frames",
                f"{len(frames)} frames asked; at most {MAX_PICTURE_FRAMES} per call",
                "ask for a few frames at a time, or omit frames for the contact sheet",
            )
        )
    out: list[tuple[str, bytes]] = []
    for frame in frames:
        out.append((f"bev_{frame}.png", bev_png(job, frame)))
        with suppress(
            InputError
        ):  # no image_2/calib for this frame: the BEV picture says what is missing
            out.append((f"camera_{frame}.png", camera_png(job, frame)))
    return out
