"""The KITTI-correct 5.5 spec for each action: container defaults plus the fixes the contract requires.

This is the single source of the generated templates and the schemas' `default`, and the base every
`build_spec` call starts from. Container paths follow the mount layout in `tao_bevfusion.core.paths`.
"""

import copy
from typing import Any

from tao_bevfusion.core.layout import DATA_MOUNT, RESULTS_MOUNT
from tao_bevfusion.specbuild.surface.convert import ConvertConfig
from tao_bevfusion.specbuild.surface.experiment import MISSING, ExperimentConfig

DATA = DATA_MOUNT
RESULTS = RESULTS_MOUNT
KITTI_PREFIX = {"pts": "training/velodyne_reduced", "img": "training/image_2"}
# The 5.5 sample-spec geometry: 108 m / 0.075 = 1440 = grid_size[0:2]; (108 / 0.3) / 2 * 8 = 1440 (§2.8).
GEOMETRY = {
    "point_cloud_range": [-54.0, -54.0, -5.0, 54.0, 54.0, 3.0],
    "voxel_size": [0.075, 0.075, 0.2],
}
NEVER_EMITTED = {"model": {"pts_middle_encoder": {"encoder_channels", "encoder_paddings"}}}


def info_pickle(split: str, root: str = DATA) -> str:
    return f"{root.rstrip('/')}/kitti_person_infos_{split}.pkl"


def _experiment_defaults() -> dict[str, Any]:
    return ExperimentConfig().model_dump(mode="python", exclude=NEVER_EMITTED)


def recommended_spec(action: str) -> dict[str, Any]:
    """A fresh, fully populated, KITTI-correct spec dict for `action` (running checkpoint left `???`)."""
    if action == "dataset_convert":
        spec = ConvertConfig().model_dump(mode="python")
        spec.update(root_dir=DATA, results_dir=DATA, mode="training")
        return spec
    spec = _experiment_defaults()
    spec["results_dir"] = RESULTS
    spec["wandb"]["enable"] = False
    ds = spec["dataset"]
    ds["root_dir"] = DATA
    ds["default_cam_key"] = "CAM2"
    for split, pkl in (("train_dataset", "train"), ("val_dataset", "val"), ("test_dataset", "val")):
        ds[split]["ann_file"] = info_pickle(pkl)
        ds[split]["data_prefix"] = copy.deepcopy(KITTI_PREFIX)
    spec["model"].update(copy.deepcopy(GEOMETRY))
    spec["model"]["img_backbone"]["init_cfg"] = None
    spec["evaluate"]["checkpoint"] = MISSING if action == "evaluate" else ""
    spec["inference"]["checkpoint"] = MISSING if action == "inference" else ""
    return spec
