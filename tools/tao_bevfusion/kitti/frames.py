"""KITTI readers (calib, label_2, velodyne) and LiDAR box geometry, numpy only.

Frames: LiDAR (x forward, y left, z up); rectified camera 2 (x right, y down, z forward).
lidar -> rect camera is R0_rect @ Tr_velo_to_cam; rect camera -> image_2 pixels is P2.
"""

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tao_bevfusion.core.errors import InputError, problem
from tao_bevfusion.kitti.classes import PERSON_CLASSES

MAX_VELODYNE_BYTES = 64 * 1024 * 1024  # a KITTI frame is ~2 MB; 64 MB is ~4M points
MAX_TEXT_BYTES = 1024 * 1024
NEAR_PLANE = 0.1  # metres in front of the camera; edges behind it are clipped before projecting


@dataclass(frozen=True)
class Calib:
    P2: np.ndarray  # (3, 4)
    R0_rect: np.ndarray  # (3, 3)
    Tr_velo_to_cam: np.ndarray  # (3, 4)

    @property
    def lidar2cam(self) -> np.ndarray:
        """4x4 LiDAR -> rectified camera 2 coordinates."""
        r0 = np.eye(4)
        r0[:3, :3] = self.R0_rect
        tr = np.eye(4)
        tr[:3, :4] = self.Tr_velo_to_cam
        return r0 @ tr

    @property
    def cam2lidar(self) -> np.ndarray:
        return np.linalg.inv(self.lidar2cam)


@dataclass(frozen=True)
class Label:
    """One label_2 row: KITTI camera-frame box, location = bottom centre, dims h, w, l."""

    cls: str
    truncated: float
    occluded: int
    alpha: float
    bbox: tuple[float, float, float, float]  # 2D box in image_2 pixels: left, top, right, bottom
    h: float
    w: float
    length: float
    location: tuple[float, float, float]
    rotation_y: float
    score: float | None = None

    @property
    def is_person(self) -> bool:
        return self.cls in PERSON_CLASSES


def _read_text(path: Path, what: str) -> str:
    st = _regular(path, what)
    if st.st_size > MAX_TEXT_BYTES:
        raise InputError(
            problem(str(path), f"{what} is {st.st_size} bytes", "pass a KITTI text file (< 1 MB)")
        )
    return path.read_text(encoding="utf-8", errors="replace")


def _regular(path: Path, what: str) -> os.stat_result:
    try:
        st = path.lstat()
    except FileNotFoundError:
        raise InputError(
            problem(str(path), f"{what} does not exist", "check the frame id and data root")
        ) from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError(
            problem(str(path), f"{what} is not a regular file", "pass a regular file (no symlink)")
        )
    return st


def read_calib(path: Path) -> Calib:
    """P2, R0_rect and Tr_velo_to_cam of a KITTI calib/<id>.txt."""
    rows: dict[str, np.ndarray] = {}
    for line in _read_text(path, "calib file").splitlines():
        key, sep, rest = line.partition(":")
        if not sep:
            continue
        try:
            rows[key.strip()] = np.array([float(v) for v in rest.split()], dtype=np.float64)
        except ValueError:
            raise InputError(
                problem(
                    str(path),
                    f"calib row {key.strip()!r} has a non-number",
                    "use a KITTI calib file",
                )
            ) from None
    want = {"P2": 12, "R0_rect": 9, "Tr_velo_to_cam": 12}
    bad = [
        f"{k} ({rows[k].size if k in rows else 'missing'})"
        for k, n in want.items()
        if k not in rows or rows[k].size != n
    ]
    if bad:
        raise InputError(
            problem(
                str(path),
                "calib rows missing or of the wrong length: " + ", ".join(bad),
                "P2 and Tr_velo_to_cam need 12 numbers, R0_rect 9",
            )
        )
    return Calib(
        rows["P2"].reshape(3, 4),
        rows["R0_rect"].reshape(3, 3),
        rows["Tr_velo_to_cam"].reshape(3, 4),
    )


def read_labels(path: Path) -> list[Label]:
    """All rows of a label_2/<id>.txt (DontCare included; callers filter)."""
    labels = []
    for n, line in enumerate(_read_text(path, "label file").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) not in (15, 16):
            raise InputError(
                problem(
                    f"{path}:{n}",
                    f"label row has {len(parts)} columns",
                    "KITTI label_2 rows have 15 columns (16 with a score)",
                )
            )
        try:
            v = [float(x) for x in parts[1:]]
        except ValueError:
            raise InputError(
                problem(f"{path}:{n}", "label row has a non-number", "fix the row")
            ) from None
        labels.append(
            Label(
                cls=parts[0],
                truncated=v[0],
                occluded=int(v[1]),
                alpha=v[2],
                bbox=(v[3], v[4], v[5], v[6]),
                h=v[7],
                w=v[8],
                length=v[9],
                location=(v[10], v[11], v[12]),
                rotation_y=v[13],
                score=v[14] if len(v) == 15 else None,
            )
        )
    return labels


def read_velodyne(path: Path, max_bytes: int = MAX_VELODYNE_BYTES) -> np.ndarray:
    """(N, 4) float32 x, y, z, intensity of a velodyne .bin (regular file, size a multiple of 16)."""
    st = _regular(path, "point cloud")
    if st.st_size % 16:
        raise InputError(
            problem(
                str(path),
                f"point cloud size {st.st_size} is not a multiple of 16",
                "velodyne .bin files hold float32 x, y, z, intensity per point",
            )
        )
    if st.st_size > max_bytes:
        raise InputError(
            problem(
                str(path),
                f"point cloud is {st.st_size} bytes (limit {max_bytes})",
                "pass a single KITTI frame",
            )
        )
    with open(path, "rb") as fh:
        data = fh.read(max_bytes + 1)
    return np.frombuffer(data[: len(data) // 16 * 16], dtype="<f4").reshape(-1, 4)


def labels_to_lidar(labels: list[Label], calib: Calib) -> np.ndarray:
    """(N, 9) LiDAR boxes (x, y, z_bottom, l, w, h, 0, 0, yaw) for the labels, as 5.5 builds its GT.

    The bottom centre goes through cam2lidar; yaw is the heading of the label's length axis
    (camera (cos ry, 0, -sin ry)) in LiDAR, which is -ry - pi/2 up to the calibration's small tilt.
    """
    out = np.zeros((len(labels), 9))
    c2l = calib.cam2lidar
    for i, lab in enumerate(labels):
        bottom = c2l @ np.array([*lab.location, 1.0])
        heading = c2l[:3, :3] @ np.array([np.cos(lab.rotation_y), 0.0, -np.sin(lab.rotation_y)])
        out[i, :3] = bottom[:3]
        out[i, 3:6] = (lab.length, lab.w, lab.h)
        out[i, 8] = np.arctan2(heading[1], heading[0])
    return out


def as_nine(boxes: np.ndarray) -> np.ndarray:
    """7-value rows (x, y, z, dx, dy, dz, yaw) become 9-value rows with rx = ry = 0."""
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim == 1:
        boxes = boxes.reshape(1, -1)
    if boxes.size == 0:
        return np.zeros((0, 9))
    if boxes.ndim != 2:
        raise ValueError(f"boxes have shape {boxes.shape}, expected (N, 7) or (N, 9)")
    if boxes.shape[1] == 9:
        return boxes
    if boxes.shape[1] == 7:
        out = np.zeros((len(boxes), 9))
        out[:, :6], out[:, 8] = boxes[:, :6], boxes[:, 6]
        return out
    raise ValueError(f"boxes have {boxes.shape[1]} values per row, expected 7 or 9")


def rotation(rx: float, ry: float, rz: float) -> np.ndarray:
    """R = Rz @ Ry @ Rx (column vectors), the matrix 5.5's get_rotation_matrix_3d applies to row vectors."""
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    mx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    my = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    mz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return mz @ my @ mx


# Unit corners relative to the bottom centre: 0-3 bottom, 4-7 top; 0, 1, 4, 5 on the front (+dx) face.
_UNIT = np.array(
    [
        [0.5, 0.5, 0],
        [0.5, -0.5, 0],
        [-0.5, -0.5, 0],
        [-0.5, 0.5, 0],
        [0.5, 0.5, 1],
        [0.5, -0.5, 1],
        [-0.5, -0.5, 1],
        [-0.5, 0.5, 1],
    ]
)
EDGES = (
    (0, 1),
    (1, 2),
    (2, 3),
    (3, 0),
    (4, 5),
    (5, 6),
    (6, 7),
    (7, 4),
    (0, 4),
    (1, 5),
    (2, 6),
    (3, 7),
)


def box_corners(boxes: np.ndarray) -> np.ndarray:
    """(N, 8, 3) corners of LiDAR boxes (7 or 9 values per row)."""
    b = as_nine(boxes)
    out = np.zeros((len(b), 8, 3))
    for i, row in enumerate(b):
        local = _UNIT * row[3:6]
        out[i] = local @ rotation(*row[6:9]).T + row[:3]
    return out


def points_in_box(points: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Boolean mask of the (M, >=3) LiDAR points inside one box (7 or 9 values)."""
    row = as_nine(np.asarray(box).reshape(1, -1))[0]
    local = (points[:, :3] - row[:3]) @ rotation(
        *row[6:9]
    )  # rows times R == R.T applied to each point
    half = row[3:6] / 2
    return (
        (np.abs(local[:, 0]) <= half[0])
        & (np.abs(local[:, 1]) <= half[1])
        & (local[:, 2] >= 0)
        & (local[:, 2] <= row[5])
    )


def lidar_to_cam(points: np.ndarray, calib: Calib) -> np.ndarray:
    """(M, 3) LiDAR points -> (M, 3) rectified camera 2 coordinates."""
    homo = np.hstack([points[:, :3], np.ones((len(points), 1))])
    return (homo @ calib.lidar2cam.T)[:, :3]


def cam_to_image(cam: np.ndarray, calib: Calib) -> np.ndarray:
    """(M, 3) camera points in front of the camera -> (M, 2) image_2 pixels."""
    uvw = np.hstack([cam, np.ones((len(cam), 1))]) @ calib.P2.T
    return uvw[:, :2] / uvw[:, 2:3]


def project_box_edges(
    corners: np.ndarray, calib: Calib, near: float = NEAR_PLANE
) -> list[np.ndarray]:
    """The 12 edges of one box (8, 3 LiDAR corners) as (2, 2) pixel segments, clipped to depth >= near.

    An edge with both ends behind the near plane is dropped; one crossing it is cut at the plane,
    so a box partly behind the camera never draws lines through the image from a mirrored point.
    """
    cam = lidar_to_cam(corners, calib)
    segments = []
    for a, b in EDGES:
        pa, pb = cam[a], cam[b]
        if pa[2] < near and pb[2] < near:
            continue
        if pa[2] < near or pb[2] < near:
            t = (near - pa[2]) / (pb[2] - pa[2])
            cut = pa + t * (pb - pa)
            pa, pb = (cut, pb) if pa[2] < near else (pa, cut)
        segments.append(cam_to_image(np.stack([pa, pb]), calib))
    return segments


@dataclass(frozen=True)
class Frame:
    """Paths of one KITTI frame under <root>/<split> (training or testing)."""

    root: Path
    frame: str
    split: str = "training"

    def path(self, sub: str, ext: str) -> Path:
        return self.root / self.split / sub / f"{self.frame}.{ext}"

    @property
    def calib(self) -> Path:
        return self.path("calib", "txt")

    @property
    def label(self) -> Path:
        return self.path("label_2", "txt")

    @property
    def velodyne(self) -> Path:
        return self.path("velodyne", "bin")

    @property
    def image(self) -> Path:
        return self.path("image_2", "png")

    def gt_boxes(self, calib: Calib) -> tuple[np.ndarray, np.ndarray, list[Label]]:
        """(person boxes, other boxes, labels) in LiDAR; empty when the frame has no label_2 file."""
        if not self.label.exists():
            return np.zeros((0, 9)), np.zeros((0, 9)), []
        labels = [lab for lab in read_labels(self.label) if lab.cls != "DontCare"]
        boxes = labels_to_lidar(labels, calib)
        person = np.array([lab.is_person for lab in labels], dtype=bool)
        return boxes[person], boxes[~person], labels
