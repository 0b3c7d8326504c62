"""The typed 5.5 surface and the generated skill-bank artifacts."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from pydantic import ValidationError
from tao_bevfusion import generate
from tao_bevfusion.specbuild.surface import ACTIONS, ConvertConfig, ExperimentConfig, newer_key_message
from tao_bevfusion.specbuild.surface.recommended import recommended_spec

from tests.conftest import DATA, REPO

NVIDIA_KEYS = DATA / "nvidia_reference"  # key names derived from NVIDIA's skill files: README.md there
NEWER = [
    {"model_name": "bevfusion"}, {"wandb": {"group": "g"}}, {"wandb": {"run_id": "r"}},
    {"train": {"checkpoint_interval_unit": "epoch"}}, {"train": {"checkpointer": {"save_top_k": 1}}},
    {"evaluate": {"trt_engine": "x"}}, {"evaluate": {"batch_size": 1}},
    {"inference": {"trt_engine": "x"}}, {"inference": {"batch_size": 1}},
]


def _leaf_paths(data: object, prefix: str = "") -> set[str]:
    if not isinstance(data, dict):
        return {prefix.rstrip(".")}
    out: set[str] = set()
    for k, v in data.items():
        out |= _leaf_paths(v, f"{prefix}{k}.") if isinstance(v, dict) and v else {f"{prefix}{k}"}
    return out


def _schema_paths(schema: dict, prefix: str = "") -> set[str]:
    out: set[str] = set()
    for k, v in schema.get("properties", {}).items():
        if not isinstance(v, dict):
            continue
        out.add(prefix + k)
        out |= _schema_paths(v, f"{prefix}{k}.")
    return out


@pytest.mark.parametrize("extra", NEWER, ids=lambda d: json.dumps(d))
def test_newer_keys_rejected_by_55_surface(extra: dict) -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        ExperimentConfig.model_validate(extra)


def test_newer_key_message_names_the_origin() -> None:
    assert "newer than 5.5" in (newer_key_message("train.checkpointer.monitor") or "")
    assert newer_key_message("train.checkpoint_interval") is None


def test_model_defaults_are_the_containers_not_recommendations() -> None:
    d = ExperimentConfig()
    assert d.dataset.default_cam_key == "CAM0"
    assert d.dataset.train_dataset.data_prefix == {"pts": "training/lidar_reduced", "img": "training/images/"}
    assert d.model.img_backbone.init_cfg and d.model.img_backbone.init_cfg["checkpoint"].startswith("https://")
    assert d.evaluate.checkpoint == "???" and d.inference.checkpoint == "???"
    assert len(d.train.lr_scheduler) == 4 and d.train.lr_scheduler[1]["T_max"] == 10
    assert ConvertConfig().results_dir == ConvertConfig().root_dir


def test_strict_types_and_bounds() -> None:
    with pytest.raises(ValidationError):
        ExperimentConfig.model_validate({"train": {"gpu_ids": "0,1"}})
    with pytest.raises(ValidationError):
        ExperimentConfig.model_validate({"dataset": {"train_dataset": {"num_workers": 0}}})
    with pytest.raises(ValidationError):
        ExperimentConfig.model_validate({"evaluate": {"checkpoint": None}})


@pytest.mark.parametrize("action", ACTIONS)
def test_generated_schema_is_valid_2020_12_and_portable(action: str) -> None:
    text = (REPO / "schemas" / f"{action}.schema.json").read_text()
    assert "Infinity" not in text and "NaN" not in text
    schema = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    jsonschema.Draft202012Validator.check_schema(schema)
    for key in ("default", "automl_default_parameters", "automl_disabled_parameters", "popular", "x_tao_schema"):
        assert key in schema
    assert "automl_disabled_parameters" not in schema["properties"]
    jsonschema.Draft202012Validator(schema).validate(schema["default"])
    assert schema["x_tao_schema"]["action"] == action


def test_schema_rejects_unknown_and_newer_keys() -> None:
    schema = json.loads((REPO / "schemas" / "train.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    bad = recommended_spec("train")
    bad["train"]["checkpointer"] = {"save_top_k": 1}
    assert any("checkpointer" in e.message for e in validator.iter_errors(bad))


def test_committed_artifacts_are_fresh() -> None:
    assert generate.main(["--check"]) == 0


def test_check_detects_stale_artifacts(tmp_path: Path) -> None:
    copy = tmp_path / "skill"
    for folder in ("schemas", "references"):
        shutil.copytree(REPO / folder, copy / folder)
    (copy / "references" / "spec_template_train.yaml").write_text("stale: true\n")
    proc = subprocess.run([sys.executable, "-m", "tao_bevfusion.generate", "--check"], cwd=REPO, capture_output=True,
                          text=True, env={"TAO_BEVFUSION_SKILL_DIR": str(copy), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 1 and "spec_template_train.yaml" in proc.stderr


@pytest.mark.parametrize("action", ACTIONS)
def test_templates_are_55_correct(action: str) -> None:
    tpl = yaml.safe_load((REPO / "references" / f"spec_template_{action}.yaml").read_text())
    if action == "dataset_convert":
        assert tpl["results_dir"] == tpl["root_dir"] and tpl["mode"] == "training"
        return
    ExperimentConfig.model_validate(tpl)
    assert tpl["dataset"]["default_cam_key"] == "CAM2"
    for split in ("train_dataset", "val_dataset", "test_dataset"):
        assert tpl["dataset"][split]["data_prefix"] == {"pts": "training/velodyne_reduced", "img": "training/image_2"}
    assert tpl["model"]["img_backbone"]["init_cfg"] is None
    assert tpl["train"]["resume_training_checkpoint_path"] is None and tpl["train"]["pretrained_checkpoint"] is None
    for other in {"evaluate", "inference"} - {action}:
        assert tpl[other]["checkpoint"] == ""
    assert "&id" not in (REPO / "references" / f"spec_template_{action}.yaml").read_text()


def test_skill_info_commands_and_shorthands_point_at_real_fields() -> None:
    info = yaml.safe_load((REPO / "references" / "skill_info.yaml").read_text())
    assert info["automl_enabled"] is True and info["container_image"] == "nvcr.io/nvidia/tao/tao-toolkit:5.5.0-pyt"
    assert info["actions"]["dataset_convert"]["command"] == "bevfusion convert -e {config_path}"
    for action in ACTIONS:
        assert "{config_path}" in info["actions"][action]["command"]
    paths = _schema_paths(json.loads((REPO / "schemas" / "train.schema.json").read_text()))
    for short, target in info["spec_shorthand_keys"].items():
        assert target in paths, f"shorthand {short} -> {target} is not a 5.5 key"
    assert info["spec_shorthand_keys"]["batch_size"] == "dataset.train_dataset.batch_size"
    assert info["spec_shorthand_keys"]["learning_rate"] == "train.optimizer.lr"


@pytest.mark.parametrize("action", ACTIONS)
def test_same_key_tree_as_nvidia_skill_bank(action: str) -> None:
    """Compatibility: every key NVIDIA's template sets exists here, and we add only documented 5.5 keys."""
    ref = json.loads((NVIDIA_KEYS / f"keys_{action}.json").read_text())
    assert ref["action"] == action and ref["template_leaves"] and ref["schema_paths"]
    ours = _schema_paths(json.loads((REPO / "schemas" / f"{action}.schema.json").read_text()))
    ref_schema = set(ref["schema_paths"])
    for leaf in ref["template_leaves"]:
        parts = leaf.split(".")
        assert any(".".join(parts[:i]) in ours for i in range(len(parts), 0, -1)), leaf
    extra = ours - ref_schema
    assert extra == {"model.pts_middle_encoder.encoder_channels", "model.pts_middle_encoder.encoder_paddings"} \
        or (action == "dataset_convert" and not extra), extra
    assert "automl_disabled_parameters" not in ours


def test_manifest_lists_all_actions() -> None:
    manifest = json.loads((REPO / "schemas" / "manifest.json").read_text())
    assert set(manifest["actions"]) == set(ACTIONS)
    for entry in manifest["actions"].values():
        assert (REPO / entry["path"]).is_file() and (REPO / entry["spec_template"]).is_file()
