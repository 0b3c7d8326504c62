"""check_dataset: the KITTI layout preflight to run before spending GPU time (contract §3.2, §3.6, §14).

Reads directory listings once (os.scandir) and each small text file once; never unpickles anything.
"""

import os
import shutil
import stat
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from tao_bevfusion.core import layout
from tao_bevfusion.core.calls import call_text
from tao_bevfusion.core.paths import host_path, inside
from tao_bevfusion.core.settings import HasSettings, settings_of
from tao_bevfusion.kitti.classes import KITTI_CLASSES, PERSON_CLASSES

SPLITS = ("train", "val", "test")
MODALITIES = {"calib": ".txt", "image_2": ".png", "label_2": ".txt", "velodyne": ".bin"}
CALIB_KEYS = ("P2", "R0_rect", "Tr_velo_to_cam")
MAX_LISTED = 5  # per problem code: enough to act on, small enough for an agent's context
MAX_TEXT_BYTES = 4 << 20  # ImageSets lists of ~100k frames; calib/label files are a few KB


class DatasetProblem(BaseModel):
    code: str = Field(description="Stable code, e.g. FRAME_FILE_MISSING.")
    severity: Literal["error", "warning"]
    path: str = Field(description="File or folder at fault.")
    message: str
    fix: str


class DatasetReport(BaseModel):
    ok: bool = Field(description="True when nothing blocks the action (warnings may remain).")
    action: str = Field(description="The action the root was checked for.")
    data_root: str = Field(description="The resolved host path checked.")
    frames: dict[str, int] = Field(description="Frame ids listed per split in ImageSets.")
    problems: list[DatasetProblem] = Field(description="Errors block the action; warnings do not. Fix, re-check.")
    omitted: int = Field(default=0, description="Further problems of an already-listed code not shown.")


class _Report:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.items: list[DatasetProblem] = []
        self.per_code: dict[str, int] = {}
        self.omitted = 0

    def add(self, code: str, path: Path | str, message: str, fix: str,
            severity: Literal["error", "warning"] = "error") -> None:
        count = self.per_code.get(code, 0) + 1
        self.per_code[code] = count
        if count > MAX_LISTED:
            self.omitted += 1
            return
        self.items.append(DatasetProblem(code=code, severity=severity, path=str(path), message=message, fix=fix))


def _read_small(rep: "_Report", path: Path, root: Path, limit: int = MAX_TEXT_BYTES,
                vetted: bool = False) -> str | None:
    """The text of a small regular file inside the root, or None with the problem recorded.

    Never follows a link out of the root, never opens a FIFO, socket or device (O_NONBLOCK + fstat before
    any read), and never reads more than `limit` bytes: a dataset is input from anyone. `vetted`: the path is
    no link and its folder was already checked to be inside the root, so it is opened as it is (O_NOFOLLOW)."""
    if not vetted and not inside(path, root):
        rep.add("SYMLINK_ESCAPES_ROOT", path, "links outside the dataset root (not read; it will not resolve "
                "inside the container)", "copy the file into the dataset root")
        return None
    try:
        target, nofollow = (str(path), os.O_NOFOLLOW) if vetted else (os.path.realpath(path), 0)
        fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | nofollow)
    except OSError as exc:
        rep.add("FILE_UNREADABLE", path, f"cannot be opened ({exc.strerror})", "make it a readable regular file")
        return None
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            rep.add("NOT_A_REGULAR_FILE", path, "is not a regular file (a FIFO, socket or device; not read)",
                    "replace it with the real KITTI file")
            return None
        if info.st_size > limit:
            rep.add("FILE_TOO_LARGE", path, f"{info.st_size} bytes; a KITTI text file is a few KB (not read)",
                    "replace it with the real KITTI file")
            return None
        return fh.read(limit + 1)[:limit].decode(errors="replace")


def _listing(folder: Path) -> dict[str, os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            return {e.name: e for e in it}
    except OSError:
        return {}


def _read_ids(rep: _Report, root: Path) -> dict[str, list[str]]:
    ids: dict[str, list[str]] = {}
    for split in SPLITS:
        f = root / "ImageSets" / f"{split}.txt"
        if not f.is_file():
            rep.add("IMAGESETS_MISSING", f, f"ImageSets/{split}.txt is missing (5.5 convert opens all three "
                    "split files in every mode)", f"create it (it may be empty), e.g. `touch {f}`")
            ids[split] = []
            continue
        found = []
        text = _read_small(rep, f, root)
        if text is None:
            ids[split] = []
            continue
        for n, line in enumerate(text.splitlines(), 1):
            token = line.strip()
            if not token:
                rep.add("IMAGESETS_BLANK_LINE", f, f"line {n} is blank (5.5 convert fails: invalid literal for int())",
                        "delete blank lines")
            elif not token.isdigit():
                rep.add("IMAGESETS_BAD_ID", f, f"line {n} {token[:40]!r} is not a numeric frame id",
                        "use ids like 000123")
            else:
                found.append(f"{int(token):06d}")
        ids[split] = found
    return ids


def _check_frame_files(rep: _Report, root: Path, ids: dict[str, list[str]], listings: dict[str, dict]) -> None:
    needed = sorted(set(ids["train"]) | set(ids["val"]))
    for modality, ext in MODALITIES.items():
        folder = root / "training" / modality
        if not inside(folder, root):
            rep.add("SYMLINK_ESCAPES_ROOT", folder, f"training/{modality}/ links outside the dataset root (it "
                    "will not resolve inside the container)", f"copy the {modality} files into the dataset root")
            continue
        if not listings[modality] and not folder.is_dir():
            rep.add("MODALITY_DIR_MISSING", folder, f"training/{modality}/ is missing",
                    f"put the KITTI {modality} files there")
            continue
        for fid in needed:
            entry = listings[modality].get(fid + ext)
            if entry is None:
                shown = rep.per_code.get("FRAME_FILE_MISSING", 0) < MAX_LISTED  # the hint scans the listing
                other = [n for n in listings[modality] if n.startswith(fid + ".")] if shown else []
                hint = f" (found {other[0]}; 5.5 reads {ext} only)" if other else ""
                rep.add("FRAME_FILE_MISSING", folder / (fid + ext), f"frame {fid} listed in ImageSets has no "
                        f"{modality} file{hint}", f"add the file or remove {fid} from ImageSets/*.txt")
            elif entry.is_symlink() and not inside(Path(entry.path), root):
                rep.add("SYMLINK_ESCAPES_ROOT", entry.path, "symlink points outside the dataset root (it will not "
                        "resolve inside the container)", "copy the file into the dataset root")
            elif not _regular(entry):
                rep.add("NOT_A_REGULAR_FILE", entry.path, "is not a regular file (a FIFO, socket or device)",
                        "replace it with the real KITTI file")


def _regular(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_file()  # follows the link: a FIFO or device behind a name is not a file
    except OSError:
        return False


def _within(entry: os.DirEntry[str], root: Path) -> bool:
    """An entry of a modality folder (itself checked to be inside the root) stays inside unless it is a link
    that leads out: only links pay for resolving the path (is_symlink comes from the directory listing)."""
    return not entry.is_symlink() or inside(Path(entry.path), root)


def _read_quiet(entry: os.DirEntry[str] | None, root: Path) -> str | None:
    """Contents of a frame file _check_frame_files already vetted; escapes and odd files were reported there."""
    if entry is None or not _regular(entry) or not _within(entry, root):
        return None
    return _read_small(_Report(root), Path(entry.path), root, vetted=not entry.is_symlink())


def _check_contents(rep: _Report, root: Path, ids: dict[str, list[str]], listings: dict[str, dict]) -> set[str]:
    """Checks every train/val frame's files; returns the ids of the frames with at least one person label."""
    persons: set[str] = set()
    needed = sorted(set(ids["train"]) | set(ids["val"]))
    for fid in needed:
        velo = listings["velodyne"].get(fid + ".bin")
        if velo is not None and _regular(velo) and _within(velo, root):
            size = velo.stat().st_size
            if size == 0 or size % 16:
                rep.add("VELODYNE_SIZE", velo.path, f"{size} bytes is not a positive multiple of 16 (float32 x, y, "
                        "z, intensity)", "re-export the scan; the file is truncated or not KITTI format")
        calib = listings["calib"].get(fid + ".txt")
        calib_text = _read_quiet(calib, root)
        if calib is not None and calib_text is not None:
            lines = calib_text.splitlines()
            keys = {ln.split(":", 1)[0].strip() for ln in lines if ":" in ln}
            missing = [k for k in CALIB_KEYS if k not in keys]
            if missing or len([ln for ln in lines if ln.strip()]) < 7:
                rep.add("CALIB_INCOMPLETE", calib.path, f"missing {', '.join(missing) or 'lines'} (needs >= 7 lines: "
                        "P0..P3, R0_rect, Tr_velo_to_cam, Tr_imu_to_velo)", "use the full KITTI calib file")
        label = listings["label_2"].get(fid + ".txt")
        label_text = _read_quiet(label, root)
        if label is not None and label_text is not None:
            for n, line in enumerate(label_text.splitlines(), 1):
                cols = line.split(" ")
                if not line.strip():
                    continue
                if len(cols) != 15:
                    rep.add("LABEL_COLUMNS", label.path, f"line {n} has {len(cols)} space-separated columns, not 15",
                            "write KITTI labels: class + 14 numbers, single spaces")
                elif cols[0] not in KITTI_CLASSES:
                    rep.add("LABEL_UNKNOWN_CLASS", label.path, f"line {n}: class {cols[0][:40]!r} is not a KITTI class "
                            "(only Pedestrian -> person is trained)", "fix the class name (e.g. Pedestrian)")
                elif cols[0] in PERSON_CLASSES:
                    persons.add(fid)
    return persons


def _convert_first(root: Path) -> str:
    return call_text("run_action", {"action": "dataset_convert", "data_root": str(root)}) + " first"


def _converted(rep: _Report, root: Path, action: str, ids: dict[str, list[str]]) -> None:
    pkls = ["train", "val"] if action == "train" else ["val"]
    for split in pkls:
        pkl = layout.info_pickle(root, split)
        if not pkl.is_file() or pkl.stat().st_size == 0:
            rep.add("CONVERTED_MISSING", pkl, f"{pkl.name} is missing: dataset_convert has not run on this root",
                    _convert_first(root))
    reduced = _listing(layout.reduced_dir(root))
    wanted = set(ids["val"]) | (set(ids["train"]) if action == "train" else set())
    if not reduced:
        rep.add("REDUCED_MISSING", root / "training" / "velodyne_reduced", "training/velodyne_reduced/ is missing or "
                "empty", _convert_first(root))
        return
    for fid in sorted(wanted):
        if fid + ".bin" not in reduced:
            rep.add("REDUCED_FRAME_MISSING", layout.reduced_dir(root) / f"{fid}.bin",
                    f"frame {fid} has no reduced cloud (ImageSets changed after convert?)", "re-run dataset_convert")


def _check_splits(rep: _Report, root: Path, action: str, ids: dict[str, list[str]], persons: set[str]) -> None:
    """What each action needs from every split: convert reads train and val (an empty list gives an empty
    pickle); train validates, and evaluate/inference read, the val split, whose converted pickle keeps only
    frames with a person: none means an empty pickle and 'list index out of range' at the first validation."""
    if action == "dataset_convert":
        for split in ("train", "val"):
            if not ids[split] and (root / "ImageSets" / f"{split}.txt").is_file():
                rep.add("SPLIT_EMPTY", root / "ImageSets" / f"{split}.txt", f"the {split} split lists no frame: "
                        f"convert would write an empty kitti_person_infos_{split}.pkl",
                        f"list at least one labelled frame id in ImageSets/{split}.txt")
        return
    if ids["val"] and not persons & set(ids["val"]):
        rep.add("VAL_NO_PERSONS", root / "ImageSets" / "val.txt", f"none of the {len(ids['val'])} val frames has a "
                "Pedestrian/person label: the converted val pickle is empty and 5.5 crashes at the first "
                "validation ('list index out of range')", "move frames with pedestrians into ImageSets/val.txt "
                "and re-run dataset_convert")


def check_dataset(data_root: str, action: str, ctx: HasSettings | None = None, batch_size: int = 4,
                  num_gpus: int = 1) -> DatasetReport:
    """Check a KITTI root for `action`. Every problem carries a stable code, the path and the fix."""
    root = host_path(data_root, "data_root", settings_of(ctx))
    rep = _Report(root)
    ids = _read_ids(rep, root)
    listings = {m: _listing(root / "training" / m) if inside(root / "training" / m, root) else {}
                for m in MODALITIES}
    _check_frame_files(rep, root, ids, listings)
    persons = _check_contents(rep, root, ids, listings)
    _check_splits(rep, root, action, ids, persons)
    if not persons and (ids["train"] or ids["val"]):
        rep.add("NO_PERSON_LABELS", root / "training" / "label_2", "no Pedestrian label in the train or val "
                "frames: 5.5 BEVFusion trains the person class only (metrics will be empty)",
                "add frames with pedestrians", severity="warning")
    if action == "train":
        if not ids["val"]:
            rep.add("SPLIT_EMPTY", root / "ImageSets" / "val.txt", "the val split is empty (IndexError at the first "
                    "validation)", "list at least one labelled frame in ImageSets/val.txt")
        if 0 < len(ids["train"]) < batch_size * num_gpus:
            rep.add("SPLIT_SMALLER_THAN_BATCH", root / "ImageSets" / "train.txt", f"{len(ids['train'])} train frames "
                    f"< batch_size {batch_size} x {num_gpus} GPU(s): drop_last may leave an epoch with 0 iterations",
                    "lower dataset.train_dataset.batch_size or set repeat_time", severity="warning")
    if action in ("evaluate", "inference") and not ids["val"]:
        rep.add("SPLIT_EMPTY", root / "ImageSets" / "val.txt", "the val split is empty (test_dataset reuses val)",
                "list frames in ImageSets/val.txt")
    if action == "dataset_convert":
        if not os.access(root, os.W_OK):
            rep.add("ROOT_NOT_WRITABLE", root, "convert writes pickles, velodyne_reduced/ and status.json into the "
                    "root", f"make it writable (chmod u+w {root}) or convert a writable copy")
        velo_bytes = sum(e.stat().st_size for e in listings["velodyne"].values() if _regular(e))
        free = shutil.disk_usage(root).free
        if free < velo_bytes // 4:
            rep.add("DISK_SPACE", root, f"{free} bytes free < a quarter of velodyne/ ({velo_bytes} bytes)",
                    "free disk space under the dataset root")
    else:
        _converted(rep, root, action, ids)
    errors = [p for p in rep.items if p.severity == "error"]
    return DatasetReport(ok=not errors, action=action, data_root=str(root),
                         frames={s: len(v) for s, v in ids.items()}, problems=rep.items, omitted=rep.omitted)
