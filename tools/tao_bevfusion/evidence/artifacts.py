"""The artifacts each action must leave (docs/container-contract.md §5.3): present and missing evidence."""

from pathlib import Path

from tao_bevfusion.core import layout
from tao_bevfusion.evidence.models import Findings


def _convert(data_root: Path, launched_at: float, convert_mode: str) -> tuple[list[str], list[str]]:
    present: list[str] = []
    missing: list[str] = []
    for split in layout.INFO_SPLITS[convert_mode]:
        pkl = layout.info_pickle(data_root, split)
        fresh = pkl.is_file() and pkl.stat().st_mtime >= launched_at - 1
        (present if fresh else missing).append(str(pkl))
    reduced = layout.reduced_dir(data_root, convert_mode)
    (present if reduced.is_dir() and any(reduced.iterdir()) else missing).append(str(reduced))
    return present, missing


def _train(results_dir: Path, num_epochs: int | None) -> tuple[list[str], list[str]]:
    work = layout.train_dir(results_dir)
    epochs = layout.epoch_checkpoints(work)
    present = [str(p) for p in epochs.values()]
    missing: list[str] = []
    if num_epochs and num_epochs not in epochs:
        missing.append(str(work / layout.epoch_file(num_epochs)))
    pointer = work / layout.LAST_CHECKPOINT
    if pointer.is_file():
        named = Path(pointer.read_text(errors="replace").strip()).name
        if num_epochs and layout.epoch_number(named) != num_epochs:
            missing.append(f"{pointer} names {named[:80]}, expected epoch_{num_epochs}.pth")
        else:
            present.append(str(pointer))
    else:
        missing.append(str(pointer))
    return present, missing


def check_artifacts(
    action: str,
    results_dir: Path,
    data_root: Path,
    launched_at: float,
    num_epochs: int | None,
    findings: Findings,
    convert_mode: str = "training",
) -> tuple[list[str], list[str]]:
    """(present, missing) evidence of completion for `action`."""
    if action == "dataset_convert":
        return _convert(data_root, launched_at, convert_mode)
    if action == "train":
        return _train(results_dir, num_epochs)
    if action == "evaluate":
        if any(k.endswith("3D_AP11_moderate_strict") for k in findings.log_metrics):
            return ["evaluation metrics in the log (3D_AP11_moderate_strict)"], []
        return [], ["evaluation metrics in the log (…_3D_AP11_moderate_strict)"]
    preds = layout.predictions_dir(results_dir)
    files = sorted(preds.glob("*.json")) if preds.is_dir() else []
    if files:
        return [f"{preds} ({len(files)} prediction files)"], []
    return [], [str(preds)]
