"""Pictures and summaries of detections: geometry checked against the real KITTI sample."""

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tao_bevfusion.core.errors import InputError
from tao_bevfusion.evidence.predictions import frame_path, list_frames, preds_dir, read_frame, summarize, summary_text
from tao_bevfusion.kitti import frames as kg
from tao_bevfusion.present.viz.aptable import ap_chart, ap_table, ap_text
from tao_bevfusion.present.viz.bev import contact_sheet, render_bev
from tao_bevfusion.present.viz.camera import render_camera
from tao_bevfusion.present.viz.scene import Scene, load_scene

from tests.standin.bevfusion_standin import _standin_preds

# mmdet3d v1.4.0 tests/data/kitti: kitti_dbinfos_train.pkl box3d_lidar and num_points_in_gt of
# 0_Pedestrian_0, and kitti_infos_train.pkl center_2d of the same instance (frame 000000).
MMDET3D_BOX = (8.73, -1.8559175, -1.5996994, 1.2, 0.48, 1.89, -1.5807964)
MMDET3D_POINTS = 377
MMDET3D_CENTER_2D = (763.7633056640625, 224.4706268310547)
LABEL_BBOX = (712.40, 143.00, 810.73, 307.92)


def _frame(root: Path, fid: str = "000000") -> tuple[kg.Frame, kg.Calib]:
    fr = kg.Frame(root, fid)
    return fr, kg.read_calib(fr.calib)


def test_label_to_lidar_matches_mmdet3d_and_holds_the_persons_points(kitti: Path) -> None:
    fr, calib = _frame(kitti)
    person, other, labels = fr.gt_boxes(calib)
    assert len(person) == 1 and len(other) == 0 and labels[0].cls == "Pedestrian"
    box = person[0]
    assert np.allclose(box[:6], MMDET3D_BOX[:6], atol=0.01)
    assert abs(box[8] - MMDET3D_BOX[6]) < 0.005
    points = kg.read_velodyne(fr.velodyne)
    assert points.shape == (115384, 4)
    assert int(kg.points_in_box(points, box).sum()) == MMDET3D_POINTS
    # with the z origin at the gravity centre (a wrong convention) the box loses the person's legs
    lifted = box.copy()
    lifted[2] += box[5] / 2
    assert kg.points_in_box(points, lifted).sum() < 0.8 * MMDET3D_POINTS
    # a box turned by 90 degrees (yaw = ry instead of -ry - pi/2) is wrong too: length 1.2 along x
    turned = box.copy()
    turned[8] += math.pi / 2
    assert kg.points_in_box(points, turned).sum() < MMDET3D_POINTS


def test_cars_of_frame_8_contain_points(kitti: Path) -> None:
    fr, calib = _frame(kitti, "000008")
    _person, other, _ = fr.gt_boxes(calib)
    points = kg.read_velodyne(fr.velodyne)
    assert len(other) == 6
    from matplotlib.path import Path as Polygon

    for box in other:  # the drawn footprint (from the corners) holds the same points as the box test
        inside = kg.points_in_box(points, box)
        foot = Polygon(kg.box_corners(box)[0][:4, :2])
        in_z = (points[:, 2] >= box[2]) & (points[:, 2] <= box[2] + box[5])
        in_foot = foot.contains_points(points[:, :2]) & in_z
        assert inside.sum() > 20 and abs(int(in_foot.sum()) - int(inside.sum())) <= 3


def test_corner_convention_yaw_counter_clockwise_from_x() -> None:
    box = np.array([1.0, 2.0, -1.0, 4.0, 2.0, 1.5, 0.0, 0.0, 0.3])
    c = kg.box_corners(box)[0]
    front = c[:2].mean(axis=0) - np.array([1.0, 2.0, -1.0])
    assert np.allclose(front, [2.0 * math.cos(0.3), 2.0 * math.sin(0.3), 0.0])
    assert np.allclose(c[:4, 2], -1.0) and np.allclose(c[4:, 2], 0.5)  # z is the bottom
    left = c[[0, 3]].mean(axis=0)[:2] - [1.0, 2.0]  # corners 0 and 3 are on the +dy (left) side
    assert np.allclose(left, [-math.sin(0.3), math.cos(0.3)])


def test_projected_box_lands_on_the_label_2d_box(kitti: Path) -> None:
    fr, calib = _frame(kitti)
    person, _, _ = fr.gt_boxes(calib)
    corners = kg.box_corners(person)[0]
    pts = np.concatenate(kg.project_box_edges(corners, calib))
    left, top, right, bottom = pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()
    assert abs(top - LABEL_BBOX[1]) < 2 and abs(bottom - LABEL_BBOX[3]) < 2
    assert left <= LABEL_BBOX[0] + 1 and right >= LABEL_BBOX[2] - 1  # the 3D box encloses the tight 2D box
    assert LABEL_BBOX[0] - left < 12 and right - LABEL_BBOX[2] < 12
    gravity = corners.mean(axis=0, keepdims=True)
    uv = kg.cam_to_image(kg.lidar_to_cam(gravity, calib), calib)[0]
    assert np.allclose(uv, MMDET3D_CENTER_2D, atol=1.0)


def test_edges_behind_the_camera_are_clipped(kitti: Path) -> None:
    _fr, calib = _frame(kitti)
    straddling = np.array([[0.0, 0.0, -1.6, 4.0, 1.0, 1.7, 0, 0, 0]])  # from 2 m behind to 2 m ahead
    segs = kg.project_box_edges(kg.box_corners(straddling)[0], calib)
    assert 0 < len(segs) < 12
    behind = np.array([[-5.0, 0.0, -1.6, 1.0, 1.0, 1.7, 0, 0, 0]])
    assert kg.project_box_edges(kg.box_corners(behind)[0], calib) == []


def test_velodyne_reader_refuses_odd_sizes_and_symlinks(tmp_path: Path, kitti: Path) -> None:
    odd = tmp_path / "odd.bin"
    odd.write_bytes(b"\0" * 20)
    with pytest.raises(InputError, match="multiple of 16"):
        kg.read_velodyne(odd)
    link = tmp_path / "link.bin"
    link.symlink_to(kitti / "training" / "velodyne" / "000000.bin")
    with pytest.raises(InputError, match="not a regular file"):
        kg.read_velodyne(link)
    with pytest.raises(InputError, match="limit"):
        kg.read_velodyne(kitti / "training" / "velodyne" / "000000.bin", max_bytes=1024)


def _colour_near(png: bytes, col: float, row: float, rgb: tuple[int, int, int], radius: int = 3,
                 tol: int = 60) -> int:
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    r0, c0 = round(row), round(col)
    patch = img[max(0, r0 - radius):r0 + radius + 1, max(0, c0 - radius):c0 + radius + 1]
    return int((np.abs(patch - np.array(rgb)).sum(axis=2) < tol).sum())


def _scene(root: Path, fid: str = "000000") -> Scene:
    preds = _write_preds(root.parent / "results", root, [fid])
    return load_scene(root, fid, read_frame(preds / f"{fid}.json"))


def _write_preds(results: Path, root: Path, frames: list[str]) -> Path:
    out = results / "inference" / "preds"
    out.mkdir(parents=True, exist_ok=True)
    for fid in frames:
        (out / f"{fid}.json").write_text(json.dumps(_standin_preds(str(root / "training"), fid)))
    return out


def test_bev_draws_boxes_where_the_geometry_says(kitti: Path) -> None:
    scene = _scene(kitti)
    assert scene.shown.tolist() == [True, False]  # the stand-in's false positive is below 0.5
    render = render_bev(scene)
    assert render.png[:8] == b"\x89PNG\r\n\x1a\n" and len(render.png) < 300 * 1024
    pred = scene.pred_boxes[0]
    corners = kg.box_corners(pred)[0]
    front = corners[:2, :2].mean(axis=0)
    for x, y in (*corners[:4, :2], front):
        assert _colour_near(render.png, *render.pixel(x, y), (255, 0, 0)) > 0, (x, y)
    gt = kg.box_corners(scene.gt_person)[0]
    assert sum(_colour_near(render.png, *render.pixel(x, y), (255, 0, 255)) > 0 for x, y in gt[:4, :2]) >= 2
    # nothing red at the mirror image of the box (y -> -y), nor where the hidden false positive is
    assert _colour_near(render.png, *render.pixel(pred[0], -pred[1]), (255, 0, 0), radius=6) == 0
    fp = scene.pred_boxes[1]
    assert _colour_near(render.png, *render.pixel(fp[0], fp[1]), (255, 0, 0), radius=6) == 0


def test_camera_picture_draws_the_projected_boxes(kitti: Path) -> None:
    scene = _scene(kitti)
    assert scene.calib is not None
    calib = scene.calib

    def corner_hits(render_png: bytes, scale: float, boxes: np.ndarray, rgb: tuple[int, int, int]) -> int:
        uv = kg.cam_to_image(kg.lidar_to_cam(kg.box_corners(boxes)[0], calib), calib)
        # the photo is palette-quantised to stay under 300 KB, which moves magenta to about (222, 15, 213)
        return sum(_colour_near(render_png, (u + 0.5) * scale, (v + 0.5) * scale, rgb, radius=4, tol=120) > 0
                   for u, v in uv)

    render = render_camera(scene)
    assert len(render.png) < 300 * 1024 and render.width == 1000
    assert corner_hits(render.png, render.scale, scene.pred_boxes[:1], (255, 0, 0)) >= 6
    assert _colour_near(render.png, *render.pixel(200, 300), (255, 0, 0), radius=6, tol=120) == 0
    gt_only = load_scene(kitti, "000000")
    gt_render = render_camera(gt_only)
    assert corner_hits(gt_render.png, gt_render.scale, gt_only.gt_person, (255, 0, 255)) >= 6
    with pytest.raises(InputError, match="no image_2"):
        render_camera(Scene(frame="x", calib=calib))


def test_contact_sheet_and_missing_inputs(kitti: Path) -> None:
    scenes = [_scene(kitti, f) for f in ("000000", "000008")] * 3
    png = contact_sheet(scenes, thumb_px=120)
    img = Image.open(io.BytesIO(png))
    assert img.size[0] == 3 * 120
    bare = load_scene(None, "000123")
    assert bare.points is None and "no data root" in bare.notes[0]
    assert render_bev(bare).png[:4] == b"\x89PNG"


def test_prediction_shapes_are_checked(tmp_path: Path) -> None:
    def put(name: str, data: object) -> Path:
        p = tmp_path / f"{name}.json"
        p.write_text(json.dumps(data))
        return p

    good = put("000001", {"labels_3d": [0], "scores_3d": [0.9], "bboxes_3d": [[1, 2, -1, 0.8, 0.6, 1.7, 0, 0, 0.3]]})
    assert read_frame(good).array().shape == (1, 9)
    seven = read_frame(put("000002", {"labels_3d": [0], "scores_3d": [0.9], "bboxes_3d": [[1, 2, -1, 1, 1, 1, 0.3]]}))
    assert seven.boxes[0][6:] == [0.0, 0.0, 0.3]
    empty = read_frame(put("000003", {}))
    assert empty.boxes == [] and empty.note and "no pred_instances_3d" in empty.note
    assert read_frame(put("000004", {"labels_3d": [], "scores_3d": [], "bboxes_3d": []})).boxes == []
    cases = {
        "6 values": ({"labels_3d": [0], "scores_3d": [0.9], "bboxes_3d": [[1, 2, 3, 4, 5, 6]]}, r"\[6\] values"),
        "old key": ({"labels_3d": [0], "scores_3d": [0.9], "boxes_3d": [[0] * 9]}, "missing bboxes_3d; found keys"),
        "count": ({"labels_3d": [0], "scores_3d": [0.9, 0.8], "bboxes_3d": [[1] * 9]}, "labels_3d has 1 values"),
        "rows": ({"labels_3d": [0, 0], "scores_3d": [0.9, 0.8], "bboxes_3d": [[1] * 9]}, "has 1 rows"),
        "size": ({"labels_3d": [0], "scores_3d": [0.9], "bboxes_3d": [[1, 1, 1, 0, 1, 1, 0, 0, 0]]}, "non-positive"),
        "list": ([1, 2], "top level is a list"),
    }
    for i, (data, msg) in enumerate(cases.values()):
        with pytest.raises(InputError, match=msg):
            read_frame(put(f"bad{i}", data))
    (tmp_path / "bad_json.json").write_text("{not json")
    with pytest.raises(InputError, match="not JSON"):
        read_frame(tmp_path / "bad_json.json")
    with pytest.raises(InputError, match="not a frame id"):
        frame_path(tmp_path, "../etc/passwd")


def test_summary_counts_thresholds_and_top_boxes(kitti: Path, tmp_path: Path) -> None:
    folder = _write_preds(tmp_path / "r", kitti, ["000000", "000008"])
    (folder / "000009.json").write_text(json.dumps({"labels_3d": [0], "scores_3d": [0.9], "bboxes_3d": [[1, 2]]}))
    assert preds_dir(tmp_path / "r") == folder and list_frames(folder) == ["000000", "000008", "000009"]
    s = summarize(folder, threshold=0.5)
    assert (s.frames, s.boxes, s.boxes_above_threshold, s.frames_without_boxes_above_threshold) == (2, 3, 1, 1)
    assert len(s.problems) == 1 and s.problems[0].startswith("000009.json: bboxes_3d rows have [2] values")
    assert sum(s.score_histogram) == 3 and s.score_quantiles["max"] >= 0.75
    top = s.top[0]
    assert top.frame == "000000" and abs(top.x - 8.73) < 0.2 and abs(top.y + 1.86) < 0.2 and top.dz == 1.89
    assert [c.above_threshold for c in s.per_frame] == [1, 0]
    text = summary_text(s)
    assert "1 boxes >= 0.5 in 2 frames" in text and "000000 score" in text and "unreadable: 1" in text
    assert summarize(folder, threshold=0.05).boxes_above_threshold == 3
    empty = tmp_path / "e" / "preds"
    empty.mkdir(parents=True)
    with pytest.raises(InputError, match=r"no <frame>\.json"):
        summarize(empty)


def test_ap_table_text_and_chart() -> None:
    metrics = {}
    for kind, base in (("3D", 30.0), ("BEV", 40.0), ("2D", 50.0)):
        for ap, off in (("AP11", 0.0), ("AP40", -2.0)):
            for diff, d in (("easy", 5.0), ("moderate", 0.0), ("hard", -5.0)):
                metrics[f"person_{kind}_{ap}_{diff}_strict"] = base + off + d
                metrics[f"person_{kind}_{ap}_{diff}_loose"] = base + off + d + 10
    table = ap_table(metrics)
    assert len(table.rows) == 12
    assert table.value("BEV", "AP40", "moderate") == 38.0 and table.value("3D", "AP11", "hard", "loose") == 35.0
    text = ap_text(table, overlaps=("strict",))
    assert text.splitlines()[1].split() == ["person", "strict", "AP11", "3D", "35.00", "30.00", "25.00"]
    assert len(text.splitlines()) == 7
    assert ap_chart(table)[:4] == b"\x89PNG"
    assert ap_text(ap_table({"unrelated": 1.0})) == "no AP values in the log"
