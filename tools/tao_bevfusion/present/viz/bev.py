"""Bird's-eye-view PNGs: LiDAR points from above coloured by height, predicted and ground-truth boxes.

Points are binned into a raster with numpy (max height per cell) and shown with imshow, which
keeps a 120k-point frame well under the time and size budget that scatter() would blow.
Up in the picture is LiDAR +x (forward), left is +y.
"""

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from tao_bevfusion.core.caller import check_caller
from tao_bevfusion.kitti.frames import box_corners
from tao_bevfusion.present.viz.figure import MAX_LABELS, add_lines, closed_on_error, png, pyplot
from tao_bevfusion.present.viz.scene import GT_COLOR, OTHER_COLOR, PRED_COLOR, Scene

VIEW = (-5.0, 40.0, -22.5, 22.5)  # x_min, x_max, y_min, y_max in metres
Z_RANGE = (-2.5, 1.5)  # LiDAR z colour range (sensor ~1.73 m above the road)
MAX_SHEET_FRAMES = 64


@dataclass(frozen=True)
class BevRender:
    png: bytes
    width: int
    height: int
    col: tuple[float, float]  # pixel column = col[0] * y + col[1]
    row: tuple[float, float]  # pixel row (from the top) = row[0] * x + row[1]

    def pixel(self, x: float, y: float) -> tuple[float, float]:
        """(column, row) in the PNG of the LiDAR ground point (x, y)."""
        return self.col[0] * y + self.col[1], self.row[0] * x + self.row[1]


def height_raster(
    points: np.ndarray | None, view: tuple[float, float, float, float], cell: float
) -> np.ndarray:
    """(rows, cols, 4) RGBA: max point height per cell through viridis; empty cells white."""
    x0, x1, y0, y1 = view
    rows, cols = math.ceil((x1 - x0) / cell), math.ceil((y1 - y0) / cell)
    top = np.full(rows * cols, -np.inf)
    if points is not None and len(points):
        p = points[
            (points[:, 0] >= x0) & (points[:, 0] < x1) & (points[:, 1] > y0) & (points[:, 1] <= y1)
        ]
        r = ((x1 - p[:, 0]) / cell).astype(np.int64).clip(0, rows - 1)
        c = ((y1 - p[:, 1]) / cell).astype(np.int64).clip(0, cols - 1)
        np.maximum.at(top, r * cols + c, p[:, 2])
    from matplotlib import colormaps

    filled = np.isfinite(top)
    rgba = np.ones((rows * cols, 4))
    norm = (np.clip(top[filled], *Z_RANGE) - Z_RANGE[0]) / (Z_RANGE[1] - Z_RANGE[0])
    rgba[filled] = colormaps["viridis"](norm)
    return rgba.reshape(rows, cols, 4)


def view_for(
    scene: Scene, view: tuple[float, float, float, float] = VIEW
) -> tuple[float, float, float, float]:
    """The default view, widened (to at most 100 m) so every drawn box is inside it."""
    boxes = np.vstack([scene.pred_boxes[scene.shown], scene.gt_person, scene.gt_other])
    if not len(boxes):
        return view
    x0, x1, y0, y1 = view
    x0, x1 = max(-100.0, min(x0, boxes[:, 0].min() - 5)), min(100.0, max(x1, boxes[:, 0].max() + 5))
    y0, y1 = max(-100.0, min(y0, boxes[:, 1].min() - 5)), min(100.0, max(y1, boxes[:, 1].max() + 5))
    return x0, x1, y0, y1


def draw_boxes(
    ax: Any,
    boxes: np.ndarray,
    color: str,
    scores: np.ndarray | None = None,
    lw: float = 1.6,
    style: str = "-",
    label_size: float = 7.0,
) -> None:
    """Footprints (y, x axes), a heading tick from the centre to the front edge, and the score (of the first
    MAX_LABELS boxes); drawn as one collection, so a few hundred boxes cost one artist."""
    lines = []
    for i, corners in enumerate(box_corners(boxes)):
        lines.append(corners[[0, 1, 2, 3, 0], :2][:, ::-1])
        centre, front = corners[:4, :2].mean(axis=0), corners[:2, :2].mean(axis=0)
        lines.append(np.array([centre, front])[:, ::-1])
        if scores is not None and label_size and i < MAX_LABELS:
            ax.annotate(
                f"{scores[i]:.2f}",
                (corners[:4, 1].min(), corners[:4, 0].max()),
                color=color,
                fontsize=label_size,
                xytext=(2, 2),
                textcoords="offset points",
            )
    add_lines(ax, lines, color, lw, style)


def _legend(ax: Any, scene: Scene) -> None:
    from matplotlib.lines import Line2D

    n_pred, n_hidden = int(scene.shown.sum()), int((~scene.above).sum())
    more = int(scene.above.sum()) - n_pred
    label = f"predicted person >= {scene.threshold:g} ({n_pred}; {n_hidden} below not drawn)"
    if more:
        label = f"predicted person >= {scene.threshold:g} (best {n_pred}; {more} more and {n_hidden} below not drawn)"
    handles = [Line2D([], [], color=PRED_COLOR, lw=2, label=label)]
    if len(scene.gt_person) or len(scene.gt_other):
        handles.append(
            Line2D(
                [],
                [],
                color=GT_COLOR,
                lw=2,
                ls="--",
                label=f"ground truth person ({len(scene.gt_person)})",
            )
        )
        handles.append(
            Line2D(
                [],
                [],
                color=OTHER_COLOR,
                lw=1,
                label=f"ground truth other class ({len(scene.gt_other)})",
            )
        )
    ax.legend(handles=handles, loc="lower left", fontsize=7, framealpha=0.85)


def render_bev(
    scene: Scene,
    size_px: int = 800,
    view: tuple[float, float, float, float] | None = None,
    dpi: int = 100,
) -> BevRender:
    """One frame as a PNG of about size_px x size_px."""
    plt = pyplot()
    x0, x1, y0, y1 = view or view_for(scene)
    fig = plt.figure(figsize=(size_px / dpi, size_px / dpi), dpi=dpi)
    ax = fig.add_axes((0.09, 0.07, 0.78, 0.86))
    cell = max((x1 - x0), (y1 - y0)) / (0.86 * size_px)
    ax.imshow(
        height_raster(scene.points, (x0, x1, y0, y1), cell),
        extent=(y1, y0, x0, x1),
        interpolation="nearest",
        aspect="equal",
    )
    draw_boxes(ax, scene.gt_other, OTHER_COLOR, lw=1.0)
    draw_boxes(ax, scene.gt_person, GT_COLOR, style="--")
    draw_boxes(ax, scene.pred_boxes[scene.shown], PRED_COLOR, scene.pred_scores[scene.shown])
    ax.plot([0], [0], marker=(3, 0, 0), color="black", ms=8)  # the sensor, pointing forward
    ax.set(xlim=(y1, y0), ylim=(x0, x1), xlabel="y (m, left +)", ylabel="x (m, forward)")
    ax.set_title(f"frame {scene.frame}: BEV", fontsize=9)
    _legend(ax, scene)
    _colorbar(fig, plt)
    if scene.notes:
        fig.text(0.01, 0.005, "; ".join(scene.notes)[:160], fontsize=6, color="#555555")
    fig.canvas.draw()
    width, height = fig.canvas.get_width_height()
    (ca, ra), (cb, rb) = ax.transData.transform([(0.0, 0.0), (1.0, 1.0)])
    return BevRender(
        png=png(fig, dpi),
        width=width,
        height=height,
        col=(cb - ca, ca),
        row=(-(rb - ra), height - ra),
    )


def _colorbar(fig: Any, plt: Any) -> None:
    from matplotlib.colors import Normalize

    cax = fig.add_axes((0.89, 0.25, 0.02, 0.5))
    mappable = plt.cm.ScalarMappable(norm=Normalize(*Z_RANGE), cmap="viridis")
    fig.colorbar(mappable, cax=cax).set_label("point height z (m)", fontsize=7)
    cax.tick_params(labelsize=6)


def contact_sheet(
    scenes: list[Scene],
    thumb_px: int = 180,
    columns: int | None = None,
    view: tuple[float, float, float, float] = VIEW,
) -> bytes:
    """Many frames as small BEV thumbnails in one PNG (at most MAX_SHEET_FRAMES)."""
    if not scenes:
        raise ValueError("no frames for the contact sheet")
    scenes = scenes[:MAX_SHEET_FRAMES]
    plt = pyplot()
    cols = columns or math.ceil(math.sqrt(len(scenes)))
    rows = math.ceil(len(scenes) / cols)
    fig = plt.figure(figsize=(cols * thumb_px / 100, rows * thumb_px / 100 + 0.3), dpi=100)
    x0, x1, y0, y1 = view
    cell = max(x1 - x0, y1 - y0) / thumb_px
    with closed_on_error(fig):
        for i, scene in enumerate(scenes):
            check_caller()
            _thumbnail(fig.add_subplot(rows, cols, i + 1), scene, view, cell)
    fig.suptitle(
        f"{len(scenes)} frames, red = predicted person, magenta dashed = ground truth "
        f"(view x {x0:g}..{x1:g} m, y {y0:g}..{y1:g} m)",
        fontsize=7,
    )
    fig.subplots_adjust(
        left=0.01,
        right=0.99,
        bottom=0.01,
        top=1 - 0.3 / (rows * thumb_px / 100 + 0.3) - 0.01,
        wspace=0.05,
        hspace=0.15,
    )
    return png(fig, 100)


def _thumbnail(ax: Any, scene: Scene, view: tuple[float, float, float, float], cell: float) -> None:
    x0, x1, y0, y1 = view
    ax.imshow(
        height_raster(scene.points, view, cell),
        extent=(y1, y0, x0, x1),
        interpolation="nearest",
    )
    draw_boxes(ax, scene.gt_person, GT_COLOR, lw=0.8, style="--")
    draw_boxes(ax, scene.pred_boxes[scene.shown], PRED_COLOR, lw=0.8)
    ax.set(xlim=(y1, y0), ylim=(x0, x1), xticks=[], yticks=[])
    ax.set_title(
        f"{scene.frame}: {int(scene.shown.sum())} pred / {len(scene.gt_person)} gt",
        fontsize=6,
        pad=2,
    )
