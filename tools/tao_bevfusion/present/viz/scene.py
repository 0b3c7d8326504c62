"""One frame's inputs for a picture: points, predicted boxes, ground truth, calib, image path."""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tao_bevfusion.core.errors import InputError, problem
from tao_bevfusion.evidence.predictions import FramePredictions
from tao_bevfusion.kitti.frames import Calib, Frame, read_calib, read_velodyne

PRED_COLOR = "#ff0000"  # pure red and magenta: neither occurs in the viridis height colours
GT_COLOR = "#ff00ff"
OTHER_COLOR = "#808080"  # non-person GT (cars, cyclists): context for judging the geometry
MAX_DRAWN = 200  # boxes per class per picture


@dataclass
class Scene:
    frame: str
    points: np.ndarray | None = None  # (N, 4) LiDAR x, y, z, intensity
    pred_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 9)))
    pred_scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    gt_person: np.ndarray = field(default_factory=lambda: np.zeros((0, 9)))
    gt_other: np.ndarray = field(default_factory=lambda: np.zeros((0, 9)))
    calib: Calib | None = None
    image: Path | None = None
    threshold: float = 0.5
    notes: list[str] = field(default_factory=list)

    @property
    def above(self) -> np.ndarray:
        """Mask of the predictions at or above the threshold."""
        return self.pred_scores >= self.threshold

    @property
    def shown(self) -> np.ndarray:
        """Mask of the predictions drawn: the MAX_DRAWN best-scored at or above the threshold (8,000 boxes
        would take minutes to draw and show nothing a person can read)."""
        above = self.above
        if int(above.sum()) <= MAX_DRAWN:
            return above
        keep = np.argsort(-np.where(above, self.pred_scores, -np.inf), kind="stable")[:MAX_DRAWN]
        mask = np.zeros_like(above)
        mask[keep] = True
        return mask


def load_scene(
    data_root: Path | None,
    frame: str,
    preds: FramePredictions | None = None,
    threshold: float = 0.5,
    split: str = "training",
) -> Scene:
    """Everything that exists for the frame; what is missing is named in `notes`, not invented."""
    scene = Scene(frame=frame, threshold=threshold)
    if preds is not None:
        scene.pred_boxes, scene.pred_scores = (
            preds.array(),
            np.asarray(preds.scores, dtype=np.float64),
        )
        if preds.note:
            scene.notes.append(preds.note)
    if data_root is None:
        scene.notes.append("no data root: boxes only, no points, image or ground truth")
        return scene
    fr = Frame(Path(data_root), frame, split)
    for sub in ("velodyne", "velodyne_reduced"):
        if fr.path(sub, "bin").exists():
            scene.points = read_velodyne(fr.path(sub, "bin"))
            break
    else:
        scene.notes.append(f"no {split}/velodyne/{frame}.bin")
    if fr.calib.exists():
        scene.calib = read_calib(fr.calib)
        scene.gt_person, scene.gt_other, _ = fr.gt_boxes(scene.calib)
        if len(scene.gt_person) + len(scene.gt_other) > MAX_DRAWN:
            scene.notes.append(f"ground truth: first {MAX_DRAWN} boxes of each class drawn")
            scene.gt_person, scene.gt_other = (
                scene.gt_person[:MAX_DRAWN],
                scene.gt_other[:MAX_DRAWN],
            )
        if not fr.label.exists():
            scene.notes.append("no label_2 file: no ground truth")
    else:
        scene.notes.append(f"no {split}/calib/{frame}.txt: no ground truth and no camera picture")
    if fr.image.exists():
        scene.image = fr.image
    return scene


def require_frame(frames: list[str], frame: str) -> None:
    if frame not in frames:
        near = ", ".join(frames[:5]) + (" ..." if len(frames) > 5 else "")
        raise InputError(
            problem(
                "frame",
                f"no predictions for frame {frame!r}",
                f"pass one of the {len(frames)} frames ({near})",
                value=frame,
            )
        )
