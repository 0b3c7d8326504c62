"""check_dataset on the real KITTI sample and on five realistic breakages of a copy of it (`_break`):
(1) a split file missing (ImageSets/test.txt), (2) a train frame without its camera image, (3) a velodyne
file whose size is not a multiple of 16 bytes (float32 x, y, z, reflectance rows), (4) a calib file without
its Tr_velo_to_cam line, (5) a label class that neither KITTI nor TAO's class mapping knows (Alien).
"""

import os
import subprocess
from pathlib import Path

import pytest
from tao_bevfusion.kitti.preflight import check_dataset


def codes(report) -> dict[str, str]:
    return {p.code: p.severity for p in report.problems}


def test_real_sample_is_ready_for_convert(kitti: Path):
    rep = check_dataset(str(kitti), "dataset_convert")
    assert rep.ok and rep.frames == {"train": 2, "val": 1, "test": 0}
    assert "NO_PERSON_LABELS" not in codes(rep)


def test_train_before_convert_says_run_convert(kitti: Path):
    rep = check_dataset(str(kitti), "train")
    assert not rep.ok
    assert codes(rep)["CONVERTED_MISSING"] == "error" and "REDUCED_MISSING" in codes(rep)
    assert any("dataset_convert" in p.fix for p in rep.problems if p.code == "CONVERTED_MISSING")
    assert codes(rep)["SPLIT_SMALLER_THAN_BATCH"] == "warning"


def test_converted_root_is_ready_for_train(kitti: Path):
    for split in ("train", "val", "trainval"):
        (kitti / f"kitti_person_infos_{split}.pkl").write_bytes(b"\x80\x04N.")
    reduced = kitti / "training" / "velodyne_reduced"
    reduced.mkdir()
    (reduced / "000000.bin").write_bytes(b"\0" * 16)
    rep = check_dataset(str(kitti), "train")
    assert codes(rep) == {"REDUCED_FRAME_MISSING": "error", "SPLIT_SMALLER_THAN_BATCH": "warning"}
    (reduced / "000008.bin").write_bytes(b"\0" * 16)
    assert check_dataset(str(kitti), "train").ok
    assert check_dataset(str(kitti), "evaluate").ok


def _break(kitti: Path, which: int) -> None:
    if which == 1:
        (kitti / "ImageSets" / "test.txt").unlink()
    elif which == 2:
        (kitti / "training" / "image_2" / "000008.png").unlink()
    elif which == 3:
        velo = kitti / "training" / "velodyne" / "000008.bin"
        velo.write_bytes(velo.read_bytes()[:-5])
    elif which == 4:
        calib = kitti / "training" / "calib" / "000000.txt"
        kept = [ln for ln in calib.read_text().splitlines(True) if not ln.startswith("Tr_velo_to_cam")]
        calib.write_text("".join(kept))
    elif which == 5:
        label = kitti / "training" / "label_2" / "000000.txt"
        label.write_text(label.read_text().replace("Pedestrian", "Alien"))


@pytest.mark.parametrize("which,code,path_end", [
    (1, "IMAGESETS_MISSING", "ImageSets/test.txt"),
    (2, "FRAME_FILE_MISSING", "image_2/000008.png"),
    (3, "VELODYNE_SIZE", "velodyne/000008.bin"),
    (4, "CALIB_INCOMPLETE", "calib/000000.txt"),
    (5, "LABEL_UNKNOWN_CLASS", "label_2/000000.txt"),
])
def test_each_documented_breakage_is_found(kitti: Path, which: int, code: str, path_end: str):
    _break(kitti, which)
    rep = check_dataset(str(kitti), "dataset_convert")
    assert not rep.ok
    hit = [p for p in rep.problems if p.code == code]
    assert hit and hit[0].path.endswith(path_end) and hit[0].fix
    if which == 4:
        assert "Tr_velo_to_cam" in hit[0].message
    if which == 5:
        assert codes(rep)["NO_PERSON_LABELS"] == "warning"  # the only Pedestrian is gone


def test_blank_line_and_jpg_instead_of_png(kitti: Path):
    (kitti / "ImageSets" / "train.txt").write_text("000000\n\n000008\n")
    img = kitti / "training" / "image_2"
    (img / "000008.png").rename(img / "000008.jpg")
    c = codes(check_dataset(str(kitti), "dataset_convert"))
    assert c["IMAGESETS_BLANK_LINE"] == "error" and c["FRAME_FILE_MISSING"] == "error"
    rep = check_dataset(str(kitti), "dataset_convert")
    assert "found 000008.jpg" in next(p.message for p in rep.problems if p.code == "FRAME_FILE_MISSING")


def test_missing_person_is_a_warning_for_every_action(kitti: Path):
    _break(kitti, 5)
    label = kitti / "training" / "label_2" / "000000.txt"
    label.write_text(label.read_text().replace("Alien", "Car"))
    for action in ("dataset_convert", "train"):
        rep = check_dataset(str(kitti), action)
        assert codes(rep)["NO_PERSON_LABELS"] == "warning"
    assert check_dataset(str(kitti), "dataset_convert").ok


def test_symlink_out_of_the_root_is_flagged(kitti: Path, tmp_path: Path):
    velo = kitti / "training" / "velodyne" / "000008.bin"
    outside = tmp_path / "outside.bin"
    outside.write_bytes(velo.read_bytes())
    velo.unlink()
    velo.symlink_to(outside)
    assert "SYMLINK_ESCAPES_ROOT" in codes(check_dataset(str(kitti), "dataset_convert"))


def test_problem_lists_stay_bounded(kitti: Path):
    (kitti / "ImageSets" / "train.txt").write_text("".join(f"{i:06d}\n" for i in range(100, 200)))
    rep = check_dataset(str(kitti), "dataset_convert")
    assert len([p for p in rep.problems if p.code == "FRAME_FILE_MISSING"]) == 5 and rep.omitted >= 395


def test_read_only_root_blocks_convert(kitti: Path, workspace: Path):
    """A read-only dataset mount (as with a ro NFS share). Root ignores chmod, so root uses a ro bind mount."""
    target = workspace / "ro-kitti"
    target.mkdir()
    mounted = False
    try:
        if os.geteuid() == 0:
            subprocess.run(["mount", "--bind", str(kitti), str(target)], check=True)
            mounted = True
            subprocess.run(["mount", "-o", "remount,bind,ro", str(target)], check=True)
        else:
            target.rmdir()
            kitti.rename(target)
            os.chmod(target, 0o555)
        rep = check_dataset(str(target), "dataset_convert")
        assert codes(rep)["ROOT_NOT_WRITABLE"] == "error" and not rep.ok
        assert check_dataset(str(target), "dataset_convert").problems[0].fix.startswith("make it writable")
    finally:
        if mounted:
            subprocess.run(["umount", str(target)], check=False)
        elif target.exists():
            os.chmod(target, 0o755)
