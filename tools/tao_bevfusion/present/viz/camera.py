"""image_2 with the 3D boxes projected through P2 @ R0_rect @ Tr_velo_to_cam (edges behind the camera clipped)."""

import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from tao_bevfusion.core.errors import InputError, problem
from tao_bevfusion.kitti.frames import Calib, box_corners, project_box_edges
from tao_bevfusion.present.viz.figure import MAX_LABELS, add_lines, png, pyplot
from tao_bevfusion.present.viz.scene import GT_COLOR, OTHER_COLOR, PRED_COLOR, Scene

MAX_PNG_BYTES = 300 * 1024


@dataclass(frozen=True)
class CameraRender:
    png: bytes
    width: int
    height: int
    scale: float  # picture pixels per image_2 pixel

    def pixel(self, u: float, v: float) -> tuple[float, float]:
        """(column, row) in the PNG of image_2 pixel (u, v)."""
        return (u + 0.5) * self.scale, (v + 0.5) * self.scale


def _draw(
    ax: Any,
    boxes: np.ndarray,
    calib: Calib,
    color: str,
    lw: float,
    style: str = "-",
    scores: np.ndarray | None = None,
) -> None:
    lines = []
    for i, corners in enumerate(box_corners(boxes)):
        segs = project_box_edges(corners, calib)
        lines.extend(segs)
        if scores is not None and segs and i < MAX_LABELS:
            pts = np.concatenate(segs)
            ax.annotate(
                f"{scores[i]:.2f}",
                (pts[:, 0].min(), pts[:, 1].min()),
                color=color,
                fontsize=7,
                xytext=(0, 3),
                textcoords="offset points",
            )
    add_lines(ax, lines, color, lw, style)


def _shrink(png: bytes, limit: int) -> bytes:
    """A photo PNG over the limit becomes a 256-colour palette PNG (Pillow ships with matplotlib)."""
    if len(png) <= limit:
        return png
    from PIL import Image

    img = (
        Image.open(io.BytesIO(png))
        .convert("RGB")
        .quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    )
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=True)
    return out.getvalue() if len(out.getvalue()) < len(png) else png


def render_camera(
    scene: Scene, width_px: int = 1000, dpi: int = 100, max_bytes: int = MAX_PNG_BYTES
) -> CameraRender:
    """The frame's image_2 with predicted (red) and ground-truth (magenta dashed) boxes."""
    if scene.image is None or scene.calib is None:
        missing = "image_2" if scene.image is None else "calib"
        raise InputError(
            problem(
                "frame",
                f"frame {scene.frame} has no {missing} file",
                "pass the data root of the frames (training/image_2, training/calib)",
            ),
            headline="no camera picture",
        )
    from matplotlib import image as mpimg

    img = mpimg.imread(str(scene.image))
    h, w = img.shape[:2]
    scale = width_px / w
    plt = pyplot()
    fig = plt.figure(figsize=(width_px / dpi, h * scale / dpi), dpi=dpi)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.imshow(img, interpolation="bilinear")
    _draw(ax, scene.gt_other, scene.calib, OTHER_COLOR, 0.8)
    _draw(ax, scene.gt_person, scene.calib, GT_COLOR, 1.4, "--")
    _draw(
        ax,
        scene.pred_boxes[scene.shown],
        scene.calib,
        PRED_COLOR,
        1.4,
        scores=scene.pred_scores[scene.shown],
    )
    ax.set(xlim=(-0.5, w - 0.5), ylim=(h - 0.5, -0.5))
    ax.axis("off")
    ax.text(
        6,
        14,
        f"frame {scene.frame}: red = predicted person >= {scene.threshold:g}, magenta dashed = ground "
        "truth person, grey = other classes",
        color="white",
        fontsize=7,
        bbox={"facecolor": "black", "alpha": 0.6, "pad": 2, "lw": 0},
    )
    width, height = fig.canvas.get_width_height()
    return CameraRender(
        png=_shrink(png(fig, dpi), max_bytes), width=width, height=height, scale=scale
    )
