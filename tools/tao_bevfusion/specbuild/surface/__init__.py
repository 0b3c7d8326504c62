"""The TAO 5.5 BEVFusion spec surface: every key the 5.5 container accepts, typed, with 5.5 defaults.

Model defaults are the *container's* dataclass defaults (what 5.5 does when a key is absent),
not recommendations; `tao_bevfusion.specbuild.surface.recommended` holds the KITTI-correct overlay.
Source: docs/container-contract.md §2.9 and §3.1.
"""

from tao_bevfusion.core.actions import ACTION_SPECS, ACTIONS
from tao_bevfusion.specbuild.surface.convert import ConvertConfig
from tao_bevfusion.specbuild.surface.experiment import (
    EvaluateConfig,
    ExperimentConfig,
    InferenceConfig,
    TrainConfig,
)
from tao_bevfusion.specbuild.surface.newer import NEWER_THAN_55, newer_key_message

CLI_SUBTASK = {name: spec.subtask for name, spec in ACTION_SPECS.items()}

__all__ = [
    "ACTIONS",
    "CLI_SUBTASK",
    "NEWER_THAN_55",
    "ConvertConfig",
    "EvaluateConfig",
    "ExperimentConfig",
    "InferenceConfig",
    "TrainConfig",
    "newer_key_message",
]
