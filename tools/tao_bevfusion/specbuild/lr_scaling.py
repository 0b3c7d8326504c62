"""The learning rate follows the global batch (the linear scaling rule, Goyal et al. 2017).

The reference is the 5.5 default configuration: lr 2e-4 (train.optimizer.lr) for a global batch of
4 = batch_size 4 per GPU x 1 GPU x 1 node (dataset.train_dataset.batch_size, train.num_gpus,
train.num_nodes). A train spec whose global batch differs gets lr = 2e-4 x global / 4, reported as a change
with its reason. It is left alone when the caller set the learning rate (overrides 'train.optimizer.lr' or
'learning_rate', or a base_spec with its own lr), on a resume (the run keeps its optimizer), or with
scale_lr=false.
"""

from typing import Any

from tao_bevfusion.core.dotted import get_path
from tao_bevfusion.specbuild import rules as specrules

REFERENCE_LR = 2e-4
REFERENCE_BATCH_PER_GPU = 4
REFERENCE_GLOBAL_BATCH = REFERENCE_BATCH_PER_GPU * 1 * 1
LR_KEY = "train.optimizer.lr"


def global_batch(spec: dict[str, Any]) -> int | None:
    parts = [
        get_path(spec, "dataset.train_dataset.batch_size", REFERENCE_BATCH_PER_GPU),
        get_path(spec, "train.num_gpus", 1),
        get_path(spec, "train.num_nodes", 1),
    ]
    if not all(isinstance(p, int) and not isinstance(p, bool) and p > 0 for p in parts):
        return None
    return int(parts[0]) * int(parts[1]) * int(parts[2])


def user_set_lr(overrides: dict[str, Any] | None) -> bool:
    nested, _ = specrules.nest_overrides(overrides or {})
    return get_path(nested, LR_KEY) is not None


def scaled_lr(spec: dict[str, Any]) -> float | None:
    batch = global_batch(spec)
    if batch is None or batch == REFERENCE_GLOBAL_BATCH:
        return None
    return float(f"{REFERENCE_LR * batch / REFERENCE_GLOBAL_BATCH:.6g}")


def scaled_for(
    spec: dict[str, Any], overrides: dict[str, Any] | None, enabled: bool, resuming: bool
) -> tuple[float, str] | None:
    """(lr, reason) for train.optimizer.lr from the global batch, or None (see the module docstring)."""
    if not enabled or resuming or user_set_lr(overrides) or get_path(spec, LR_KEY) != REFERENCE_LR:
        return None
    lr = scaled_lr(spec)
    if lr is None:
        return None
    batch = global_batch(spec)
    return lr, (
        f"linear scaling: global batch {batch} (batch_size x num_gpus x num_nodes) vs the 5.5 "
        f"reference {REFERENCE_GLOBAL_BATCH} (4 x 1 GPU x 1 node) at lr {REFERENCE_LR:g}; "
        "scale_lr=false or an lr override keeps your own"
    )
