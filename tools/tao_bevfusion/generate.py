"""Generate the skill-bank artifacts (schemas/, references/) from the typed 5.5 surface.

python -m tao_bevfusion.generate           # rewrite the files
python -m tao_bevfusion.generate --check   # exit 1 when a committed file is stale
"""

import argparse
import json
import sys
import typing
from typing import Any

from tao_bevfusion.core.settings import DEFAULT_IMAGE, skill_dir
from tao_bevfusion.specbuild.schema import SHORTHAND_KEYS, action_schema, dump_yaml
from tao_bevfusion.specbuild.surface import ACTIONS, CLI_SUBTASK


def _inputs(action: str) -> dict[str, Any]:
    if action == "dataset_convert":
        return {"root_dir": {"type": "folder"}}
    common: dict[str, Any] = {
        "dataset.root_dir": {"type": "folder"},
        "dataset.test_dataset.ann_file": {"type": "file"},
    }
    if action == "train":
        return {
            "dataset.root_dir": {"type": "folder"},
            "dataset.train_dataset.ann_file": {"type": "file"},
            "dataset.val_dataset.ann_file": {"type": "file"},
            **common,
            "train.pretrained_checkpoint": {"type": "file", "optional": True},
            "train.resume_training_checkpoint_path": {"type": "file", "optional": True},
        }
    return {**common, f"{action}.checkpoint": {"type": "file"}}


def skill_info() -> dict[str, Any]:
    spec_params: dict[str, dict[str, str]] = {
        "dataset_convert": {"results_dir": "output_dir"},
        "train": {
            "encryption_key": "key",
            "results_dir": "output_dir",
            "train.pretrained_checkpoint": "ptm_if_no_resume_model",
            "train.resume_training_checkpoint_path": "resume_model",
        },
        "evaluate": {
            "encryption_key": "key",
            "results_dir": "output_dir",
            "evaluate.checkpoint": "parent_model",
        },
        "inference": {
            "encryption_key": "key",
            "results_dir": "output_dir",
            "inference.checkpoint": "parent_model",
        },
    }
    return {
        "name": "tao-train-bevfusion",
        "network_arch": "bevfusion",
        "automl_enabled": True,
        "container_image": DEFAULT_IMAGE,
        "data_format": "default",
        "gpu_spec_key": "train.num_gpus",
        "actions": {
            a: {
                "command": f"bevfusion {CLI_SUBTASK[a]} -e {{config_path}}",
                "config_format": "yaml",
                "mode": "config",
                "inputs": _inputs(a),
                "outputs": {"results_dir": {"type": "folder"}},
                "upload_excludes": ["inputs/"],
            }
            for a in ACTIONS
        },
        "data_sources": {},
        "spec_params": spec_params,
        "spec_param_notes": {
            "train.pretrained_checkpoint": "5.5 never reads this key; tao-bevfusion build_spec moves a PTM to "
            "train.resume_training_checkpoint_path with train.resume: false",
        },
        "key_defaults": {},
        "spec_shorthand_keys": SHORTHAND_KEYS,
        "description": "BEVFusion for multi-sensor 3D object detection: LiDAR point clouds and camera images "
        "fused in bird's-eye view (KITTI person class, TAO 5.5).",
    }


def manifest() -> dict[str, Any]:
    actions = {}
    for a in ACTIONS:
        s = action_schema(a)
        actions[a] = {
            "path": f"schemas/{a}.schema.json",
            "spec_template": f"references/spec_template_{a}.yaml",
            "core_module": "bevfusion",
            "schema_action": a,
            "popular": s["popular"],
            "automl_default_parameters": s["automl_default_parameters"],
            "automl_disabled_parameters": s["automl_disabled_parameters"],
        }
    return {
        "schema_version": 1,
        "model": "bevfusion",
        "network_arch": "bevfusion",
        "automl_enabled": True,
        "failures": {},
        "actions": actions,
    }


def artifacts() -> dict[str, str]:
    """Relative path -> exact file content for every generated artifact."""
    out: dict[str, str] = {}
    for a in ACTIONS:
        schema = action_schema(a)
        out[f"schemas/{a}.schema.json"] = (
            json.dumps(schema, indent=2, sort_keys=False, allow_nan=False) + "\n"
        )
        out[f"references/spec_template_{a}.yaml"] = dump_yaml(schema["default"])
    out["schemas/manifest.json"] = json.dumps(manifest(), indent=2) + "\n"
    out["references/skill_info.yaml"] = dump_yaml(skill_info())
    return out


def main(argv: typing.Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="fail when committed artifacts are stale"
    )
    args = parser.parse_args(argv)
    root = skill_dir()
    stale = []
    for rel, content in artifacts().items():
        path = root / rel
        if args.check:
            if not path.exists() or path.read_text() != content:
                stale.append(rel)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
    if stale:
        print(
            "stale generated artifacts (run `python -m tao_bevfusion.generate`): "
            + ", ".join(stale),
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
