"""The flat dataset_convert spec (`BEVFusionDataConvertExpConfig`, contract §3.1)."""

from typing import Literal

from tao_bevfusion.specbuild.surface.base import Node, field


class ConvertConfig(Node):
    dataset: Literal["kitti", "tao3d"] = field("kitti", "Source dataset format.")
    root_dir: str = field("/data/", "Dataset root (container path); convert writes into it.")
    results_dir: str = field(
        "/data/", "Must equal root_dir: the reducer reads the pickles back from root_dir."
    )
    output_prefix: str | None = field(None, "Pickle prefix (null = kitti_person).")
    mode: Literal["training", "validation", "testing"] = field(
        "training", "Which pickles to write."
    )
    with_plane: bool = field(False, "Use training/planes/ (must exist when true).")
    per_sequence: bool = field(False, "Per-sequence output (tao3d); needs sequence_list.")
    sequence_list: str | list[str] | None = field(
        None, "Sequences for per_sequence; set both or neither."
    )
    is_synthetic: bool = field(False, "tao3d only: synthetic data.")
    dimension_order: str = field("hwl", "tao3d only: box dimension order.")
    merge_only: bool = field(False, "tao3d only: merge per-sequence pickles only.")
