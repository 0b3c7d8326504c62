"""Read what the 5.5 inferencer writes (`<results>/inference/preds/<frame>.json`) and summarise it.

5.5 `TAOMultiModalDet3DInferencer.pred2dict` dumps, per frame (stem of the LiDAR file):
{"labels_3d": [int], "scores_3d": [float], "bboxes_3d": [[9 floats]]}, or `{}` when the model
returned no `pred_instances_3d`. The rows are `TAOLiDARInstance3DBoxes` (see tools/viz/__init__.py).
A file that does not have that shape is reported, never drawn.
"""

import json
import math
import re
import stat
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from tao_bevfusion.core.errors import InputError, problem

MAX_PRED_BYTES = 16 * 1024 * 1024
MAX_FRAMES = 100_000
FRAME_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
KEYS = ("labels_3d", "scores_3d", "bboxes_3d")


class FramePredictions(BaseModel):
    frame: str
    labels: list[int]
    scores: list[float]
    boxes: list[list[float]] = Field(
        description="(N, 9) LiDAR boxes: x, y, z_bottom, dx, dy, dz, rx, ry, rz."
    )
    note: str | None = Field(
        default=None, description="Set when the file held no predictions at all ({})."
    )

    def array(self) -> np.ndarray:
        return np.asarray(self.boxes, dtype=np.float64).reshape(-1, 9)


class TopBox(BaseModel):
    frame: str
    score: float
    label: int
    x: float
    y: float
    z: float = Field(description="Bottom of the box (m, LiDAR z up).")
    dx: float = Field(description="Length along the heading (m).")
    dy: float = Field(description="Width (m).")
    dz: float = Field(description="Height (m).")
    yaw: float = Field(description="rz, radians, counter-clockwise from LiDAR +x.")
    distance: float = Field(description="Ground distance from the sensor (m).")


class FrameCount(BaseModel):
    frame: str
    boxes: int
    above_threshold: int


class DetectionSummary(BaseModel):
    preds_dir: str
    frames: int = Field(description="Frames with a readable predictions file.")
    threshold: float
    boxes: int
    boxes_above_threshold: int
    per_frame: list[FrameCount] = Field(description="Up to `max_frames` rows, in frame order.")
    frames_without_boxes_above_threshold: int
    score_quantiles: dict[str, float] = Field(
        description="min, p10, p50, p90, max of all scores (empty if none)."
    )
    score_histogram: list[int] = Field(
        description="Counts of scores in [0, 0.1), [0.1, 0.2) ... [0.9, 1.0]."
    )
    top: list[TopBox]
    problems: list[str] = Field(
        description="Files that could not be read or had an unexpected shape (capped)."
    )


def _fail(
    path: Path, message: str, fix: str = "pass the preds/<frame>.json the 5.5 inferencer wrote"
) -> InputError:
    return InputError(problem(str(path), message, fix), headline="unexpected predictions")


def _number_list(path: Path, key: str, value: object, kind: type) -> list:
    if not isinstance(value, list):
        raise _fail(path, f"{key} is a {type(value).__name__}, expected a list")
    bad = [
        v
        for v in value
        if isinstance(v, bool)
        or not isinstance(v, (int, float))
        or (kind is int and not float(v).is_integer())
    ]
    if bad:
        raise _fail(path, f"{key} holds non-{kind.__name__} values such as {bad[0]!r}")
    return [kind(v) for v in value]


def _boxes(path: Path, value: object, n: int) -> list[list[float]]:
    if not isinstance(value, list) or any(not isinstance(r, list) for r in value):
        raise _fail(path, "bboxes_3d is not a list of rows")
    widths = sorted({len(r) for r in value})
    if value and widths not in ([7], [9]):
        raise _fail(
            path,
            f"bboxes_3d rows have {widths} values, expected 9 (x, y, z, dx, dy, dz, rx, ry, rz)"
            " or 7 (x, y, z, dx, dy, dz, yaw)",
        )
    if len(value) != n:
        raise _fail(path, f"bboxes_3d has {len(value)} rows but scores_3d has {n} values")
    arr = np.asarray(value, dtype=np.float64) if value else np.zeros((0, 9))
    if not np.all(np.isfinite(arr)):
        raise _fail(path, "bboxes_3d has non-finite values")
    if len(arr) and np.any(arr[:, 3:6] <= 0):
        raise _fail(path, "bboxes_3d has non-positive sizes (dx, dy, dz)")
    if arr.shape[1] == 7:
        nine = np.zeros((len(arr), 9))
        nine[:, :6], nine[:, 8] = arr[:, :6], arr[:, 6]
        arr = nine
    return arr.tolist()


def read_frame(path: Path) -> FramePredictions:
    """One preds/<frame>.json, validated; raises InputError saying what was found."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        raise _fail(
            path, "no predictions file for this frame", "list the frames with list_frames()"
        ) from None
    if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_PRED_BYTES:
        raise _fail(
            path,
            "not a regular file"
            if not stat.S_ISREG(st.st_mode)
            else f"{st.st_size} bytes (too big)",
        )
    try:
        data = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:
        raise _fail(path, f"not JSON ({str(exc)[:80]})") from None
    except RecursionError:
        raise _fail(path, "nested too deeply to be predictions") from None
    if not isinstance(data, dict):
        raise _fail(
            path, f"top level is a {type(data).__name__}, expected an object with {', '.join(KEYS)}"
        )
    if not data:
        return FramePredictions(
            frame=path.stem,
            labels=[],
            scores=[],
            boxes=[],
            note="the file is {} (the model returned no pred_instances_3d)",
        )
    missing = [k for k in KEYS if k not in data]
    if missing:
        raise _fail(path, f"missing {', '.join(missing)}; found keys {sorted(data)[:8]}")
    scores = _number_list(path, "scores_3d", data["scores_3d"], float)
    labels = _number_list(path, "labels_3d", data["labels_3d"], int)
    if len(labels) != len(scores):
        raise _fail(path, f"labels_3d has {len(labels)} values but scores_3d has {len(scores)}")
    return FramePredictions(
        frame=path.stem,
        labels=labels,
        scores=scores,
        boxes=_boxes(path, data["bboxes_3d"], len(scores)),
    )


def preds_dir(results_dir: Path) -> Path:
    """<results>/inference/preds, or the folder itself when it already is a preds folder."""
    for cand in (results_dir / "inference" / "preds", results_dir / "preds", results_dir):
        if cand.is_dir() and cand.name == "preds":
            return cand
    raise InputError(
        problem(
            str(results_dir),
            "no inference/preds folder",
            "run inference first, or pass the job's results folder",
        ),
        headline="no predictions",
    )


def list_frames(folder: Path) -> list[str]:
    """Frame ids with a predictions file, sorted."""
    frames = []
    for entry in folder.iterdir():
        if entry.suffix == ".json" and FRAME_ID.match(entry.stem):
            frames.append(entry.stem)
            if len(frames) > MAX_FRAMES:
                break
    return sorted(frames)


def frame_path(folder: Path, frame: str) -> Path:
    if not FRAME_ID.match(frame) or frame.startswith("."):
        raise InputError(
            problem("frame", "not a frame id", "pass a stem such as 000123", value=frame)
        )
    return folder / f"{frame}.json"


def _quantiles(scores: np.ndarray) -> dict[str, float]:
    if not len(scores):
        return {}
    qs = np.quantile(scores, [0.0, 0.1, 0.5, 0.9, 1.0])
    return {
        k: round(float(v), 4) for k, v in zip(("min", "p10", "p50", "p90", "max"), qs, strict=True)
    }


def _top(preds: list[FramePredictions], threshold: float, n: int) -> list[TopBox]:
    rows = [
        (s, p.frame, lab, b)
        for p in preds
        for s, lab, b in zip(p.scores, p.labels, p.boxes, strict=True)
        if s >= threshold
    ]
    rows.sort(key=lambda r: -r[0])
    return [
        TopBox(
            frame=f,
            score=round(s, 4),
            label=lab,
            x=round(b[0], 2),
            y=round(b[1], 2),
            z=round(b[2], 2),
            dx=round(b[3], 2),
            dy=round(b[4], 2),
            dz=round(b[5], 2),
            yaw=round(b[8], 3),
            distance=round(math.hypot(b[0], b[1]), 2),
        )
        for s, f, lab, b in rows[:n]
    ]


def summarize(
    folder: Path, threshold: float = 0.5, top_n: int = 10, max_frames: int = 50
) -> DetectionSummary:
    """Counts, score distribution and top boxes of every readable frame in a preds folder."""
    frames = list_frames(folder)
    if not frames:
        raise InputError(
            problem(
                str(folder),
                "the preds folder holds no <frame>.json",
                "check the inference log; 5.5 writes one file per frame of the test pkl",
            ),
            headline="no predictions",
        )
    preds, problems = [], []
    for frame in frames:
        try:
            preds.append(read_frame(folder / f"{frame}.json"))
        except InputError as exc:
            problems.append(
                exc.problems[0].path.rsplit("/", 1)[-1] + ": " + exc.problems[0].message
            )
    scores = np.array([s for p in preds for s in p.scores], dtype=np.float64)
    above = [sum(s >= threshold for s in p.scores) for p in preds]
    hist = (
        np.histogram(np.clip(scores, 0.0, 1.0), bins=10, range=(0.0, 1.0))[0]
        if len(scores)
        else np.zeros(10)
    )
    return DetectionSummary(
        preds_dir=str(folder),
        frames=len(preds),
        threshold=threshold,
        boxes=len(scores),
        boxes_above_threshold=int(sum(above)),
        per_frame=[
            FrameCount(frame=p.frame, boxes=len(p.scores), above_threshold=int(a))
            for p, a in zip(preds[:max_frames], above, strict=False)
        ],
        frames_without_boxes_above_threshold=sum(1 for a in above if a == 0),
        score_quantiles=_quantiles(scores),
        score_histogram=[int(c) for c in hist],
        top=_top(preds, threshold, top_n),
        problems=problems[:20],
    )


def summary_text(s: DetectionSummary, rows: int = 5) -> str:
    """A few lines for the text digest."""
    q = s.score_quantiles
    lines = [
        f"detections: {s.boxes_above_threshold} boxes >= {s.threshold} in {s.frames} frames "
        f"({s.boxes} in total; {s.frames_without_boxes_above_threshold} frames with none above)"
    ]
    if q:
        lines.append(f"scores: min {q['min']}, median {q['p50']}, max {q['max']}")
    for t in s.top[:rows]:
        lines.append(
            f"  {t.frame} score {t.score:.2f} at x {t.x:.1f} y {t.y:.1f} m ({t.distance:.1f} m away), "
            f"size {t.dx:.2f}x{t.dy:.2f}x{t.dz:.2f} m, yaw {t.yaw:.2f}"
        )
    if s.problems:
        lines.append(f"unreadable: {len(s.problems)} files, e.g. {s.problems[0]}")
    return "\n".join(lines)
