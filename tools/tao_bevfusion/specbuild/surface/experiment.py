"""Top level, `train`, `evaluate`, `inference` and `wandb` of the 5.5 experiment (contract §2.3, §2.6, §2.9)."""

from typing import Any

from tao_bevfusion.specbuild.surface.base import Node, field
from tao_bevfusion.specbuild.surface.dataset import DatasetConfig
from tao_bevfusion.specbuild.surface.model import ModelConfig

MISSING = "???"  # OmegaConf's mandatory marker; 5.5 fails with MissingMandatoryValue when it stays.

DEFAULT_LR_SCHEDULER: list[dict[str, Any]] = [
    {"type": "LinearLR", "start_factor": 0.33333333, "by_epoch": False, "begin": 0, "end": 500},
    {
        "type": "CosineAnnealingLR",
        "T_max": 10,
        "eta_min_ratio": 1e-4,
        "begin": 0,
        "end": 10,
        "by_epoch": True,
    },
    {
        "type": "CosineAnnealingMomentum",
        "eta_min": 0.8947,
        "begin": 0,
        "end": 2.4,
        "by_epoch": True,
    },
    {"type": "CosineAnnealingMomentum", "eta_min": 1, "begin": 2.4, "end": 10, "by_epoch": True},
]


class WandBConfig(Node):
    enable: bool = field(
        True, "Weights & Biases logging (BEVFusion 5.5 never reads it; keep false)."
    )
    project: str = field("TAO Toolkit", "W&B project.")
    entity: str = field("", "W&B entity.")
    tags: list[str] = field(["training", "tao-toolkit"], "W&B tags.")
    reinit: bool = field(False, "W&B reinit.")
    sync_tensorboard: bool = field(False, "W&B tensorboard sync.")
    save_code: bool = field(False, "W&B code saving.")
    name: str = field("TAO Toolkit training experiment", "W&B run name.")


class Cudnn(Node):
    benchmark: bool = field(False, "cudnn.benchmark (not read by BEVFusion 5.5).")
    deterministic: bool = field(True, "cudnn.deterministic (not read by BEVFusion 5.5).")


class Optimizer(Node):
    type: str = field("AdamW", "Optimizer class.")
    lr: float = field(2e-4, "Initial learning rate.", gt=0, le=1.0, math_cond="> 0.0", automl=True)
    weight_decay: float = field(0.01, "Weight decay.", ge=0, le=1.0, automl=True)
    betas: list[float] = field([0.9, 0.999], "Adam betas.")
    clip_grad: dict[str, Any] = field({"max_norm": 35, "norm_type": 2}, "Gradient clipping (dict).")
    wrapper_type: str = field(
        "OptimWrapper", "mmengine wrapper; AmpOptimWrapper enables mixed precision."
    )


class GpuSettings(Node):
    num_gpus: int = field(
        1, "GPUs per node for this action; equal to len(gpu_ids).", ge=1, le=16, popular=True
    )
    gpu_ids: list[int] = field(
        [0], "Container-relative GPU ids [0..num_gpus-1]; pick host GPUs with Docker.", popular=True
    )
    num_nodes: int = field(1, "Nodes (torchrun --nnodes).", ge=1, le=64, popular=True)


class TrainConfig(GpuSettings):
    seed: int = field(1234, "Seed (not read by BEVFusion 5.5; use top-level manual_seed).", ge=-1)
    cudnn: Cudnn = field(Cudnn, "cudnn flags (not read by BEVFusion 5.5).")
    num_epochs: int = field(
        10,
        "Total epochs (a resume continues up to this total).",
        ge=1,
        le=1000,
        popular=True,
        automl=True,
    )
    checkpoint_interval: int = field(
        1, "Write epoch_<N>.pth every N epochs (the last is always written).", ge=1, popular=True
    )
    validation_interval: int = field(
        1, "Validate every N epochs (the last always validates).", ge=1, popular=True
    )
    logging_interval: int = field(1, "Log (and write a status.json line) every N iterations.", ge=1)
    resume_training_checkpoint_path: str | None = field(
        None, "The only weight-loading route in 5.5 (mmengine load_from). null = none; never ''."
    )
    resume: bool = field(
        False, "true = restore optimizer/epoch from the checkpoint; false = load weights only."
    )
    pretrained_checkpoint: str | None = field(None, "Declared but never read by 5.5; keep null.")
    results_dir: str | None = field(None, "Action results dir; null = <results_dir>/train.")
    by_epoch: bool = field(True, "Epoch-based loop.")
    optimizer: Optimizer = field(Optimizer, "Optimizer.")
    lr_scheduler: list[dict[str, Any]] = field(
        DEFAULT_LR_SCHEDULER, "mmengine param_scheduler list; the default is built for 10 epochs."
    )


class EvaluateConfig(GpuSettings):
    checkpoint: str = field(
        MISSING, "Checkpoint to evaluate (container path); '' when not evaluating."
    )
    results_dir: str | None = field(None, "Action results dir; null = <results_dir>/evaluate.")


class InferenceConfig(GpuSettings):
    checkpoint: str = field(
        MISSING, "Checkpoint for inference (container path); '' when not inferring."
    )
    results_dir: str | None = field(None, "Action results dir; null = <results_dir>/inference.")
    conf_threshold: float = field(0.5, "Minimum score of a kept prediction.", ge=0, le=1)
    show: bool = field(False, "Open3D display (needs a screen; keep false).")


class ExperimentConfig(Node):
    results_dir: str = field("/results", "Top-level results dir (container path), fresh per job.")
    encryption_key: str | None = field(
        None, "Model key (not read by BEVFusion 5.5). Never shown back."
    )
    wandb: WandBConfig = field(WandBConfig, "W&B settings (unused by BEVFusion 5.5).")
    default_scope: str = field("mmdet3d", "mmengine registry scope.")
    default_hooks: dict[str, Any] = field(
        {
            "timer": {"type": "IterTimerHook"},
            "logger": {"type": "LoggerHook", "interval": 1, "log_metric_by_epoch": True},
            "param_scheduler": {"type": "ParamSchedulerHook"},
            "checkpoint": {"type": "CheckpointHook", "by_epoch": True, "interval": 1},
            "sampler_seed": {"type": "DistSamplerSeedHook"},
            "visualization": {"type": "Det3DVisualizationHook"},
        },
        "mmengine hooks (dict). logger.log_metric_by_epoch must stay true.",
    )
    logger_hook: str = field(
        "TAOBEVFusionLoggerHook", "Hook that writes train/val status.json lines."
    )
    manual_seed: int | None = field(None, "The only seed BEVFusion 5.5 reads (null = random).")
    input_modality: dict[str, Any] = field(
        {
            "use_lidar": True,
            "use_camera": True,
            "use_radar": False,
            "use_map": False,
            "use_external": False,
        },
        "Sensors used; use_lidar must be true.",
    )
    model: ModelConfig = field(ModelConfig, "BEVFusion model.")
    dataset: DatasetConfig = field(DatasetConfig, "Dataset.")
    train: TrainConfig = field(
        TrainConfig, "Train settings (also read by evaluate/inference: num_gpus)."
    )
    evaluate: EvaluateConfig = field(EvaluateConfig, "Evaluate settings.")
    inference: InferenceConfig = field(InferenceConfig, "Inference settings.")
