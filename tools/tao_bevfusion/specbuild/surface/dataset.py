"""`dataset.*` of the 5.5 experiment (contract §2.4, §2.9)."""

from typing import Any, Literal

from tao_bevfusion.specbuild.surface.base import Node, field

DatasetType = Literal["KittiPersonDataset", "TAO3DDataset", "TAO3DSyntheticDataset"]


class SplitConfig(Node):
    ann_file: str | None = field(
        None, "Info pickle written by dataset_convert (absolute container path)."
    )
    data_prefix: dict[str, Any] = field(
        {"pts": "training/lidar_reduced", "img": "training/images/"},
        "Folders under root_dir for points and images. The 5.5 default is stale for KITTI and dicts merge, "
        "so always set both keys: {pts: training/velodyne_reduced, img: training/image_2}.",
    )
    sampler: str = field("DefaultSampler", "mmengine sampler class.")
    batch_size: int = field(4, "Samples per GPU.", ge=1, le=64, automl=True)
    num_workers: int = field(
        8, "DataLoader workers per GPU (0 breaks persistent_workers).", ge=1, le=64, automl=True
    )
    pin_memory: bool = field(True, "Pin host memory in the DataLoader.")
    repeat_time: int | None = field(
        None, "Repeat the split this many times per epoch (null = 1).", ge=1
    )


class DatasetConfig(Node):
    type: DatasetType = field("KittiPersonDataset", "Dataset class; KittiPersonDataset for KITTI.")
    root_dir: str = field("/data/", "Dataset root (container path).")
    classes: list[str] = field(["person"], "Classes; the 5.5 logger hook hard-codes `person`.")
    box_type_3d: Literal["lidar", "camera"] = field("lidar", "3D box frame.")
    gt_box_type: Literal["lidar", "camera"] = field("camera", "Frame of the ground-truth boxes.")
    origin: list[float] = field(
        [0.5, 1.0, 0.5], "Box origin (ignored by the three built-in types)."
    )
    default_cam_key: str = field("CAM0", "Camera key in the info pickles; KITTI pickles use CAM2.")
    per_sequence: bool = field(False, "Per-sequence info pickles (tao3d).")
    num_views: int = field(1, "Camera views per frame.", ge=1)
    point_cloud_dim: int = field(4, "Floats per LiDAR point.", ge=3)
    img_file: str | None = field(None, "Single-file inference: image path.")
    pc_file: str | None = field(None, "Single-file inference: point-cloud path.")
    cam2img: list[Any] | None = field(None, "Single-file inference: camera intrinsics.")
    lidar2cam: list[Any] | None = field(None, "Single-file inference: LiDAR-to-camera extrinsics.")
    train_dataset: SplitConfig = field(SplitConfig, "Training split.")
    val_dataset: SplitConfig = field(SplitConfig, "Validation split.")
    test_dataset: SplitConfig = field(SplitConfig, "Test split (evaluate and inference read it).")
