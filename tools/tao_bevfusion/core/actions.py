"""The four actions of the 5.5 `bevfusion` CLI, and what each one is, in one table.

Code asks this table (`ACTION_SPECS[action].writes_data_root`, ...) instead of comparing action names.
Source: docs/container-contract.md §2 (spec nodes), §4 (status.json), §6 (artifacts).
"""

from dataclasses import dataclass
from typing import Literal

Action = Literal["dataset_convert", "train", "evaluate", "inference"]


@dataclass(frozen=True)
class ActionSpec:
    name: str
    subtask: str  # `bevfusion <subtask> -e spec.yaml`
    config_node: str | None  # the spec's node of this action (None: convert's spec is flat)
    writes_data_root: (
        bool  # its outputs (pickles, velodyne_reduced, status.json) go into the data root
    )
    needs_gpus: bool  # requests GPUs by default
    loads_model: bool  # needs a checkpoint (or a parent job) to run
    artifacts: str  # what a success leaves behind (evidence/artifacts.py checks it)


ACTION_SPECS: dict[str, ActionSpec] = {
    "dataset_convert": ActionSpec(
        "dataset_convert",
        "convert",
        None,
        writes_data_root=True,
        needs_gpus=False,
        loads_model=False,
        artifacts="kitti_person_infos_{train,val,trainval}.pkl and training/velodyne_reduced in the data root",
    ),
    "train": ActionSpec(
        "train",
        "train",
        "train",
        writes_data_root=False,
        needs_gpus=True,
        loads_model=False,
        artifacts="train/epoch_<N>.pth up to num_epochs and train/last_checkpoint",
    ),
    "evaluate": ActionSpec(
        "evaluate",
        "evaluate",
        "evaluate",
        writes_data_root=False,
        needs_gpus=True,
        loads_model=True,
        artifacts="the KITTI AP table in the log",
    ),
    "inference": ActionSpec(
        "inference",
        "inference",
        "inference",
        writes_data_root=False,
        needs_gpus=True,
        loads_model=True,
        artifacts="inference/preds/<frame>.txt prediction files",
    ),
}
ACTIONS: tuple[str, ...] = tuple(ACTION_SPECS)
