"""build_spec: every contract rule, each asserted so that breaking the rule fails a test."""

import json
import os
from pathlib import Path

import jsonschema
import pytest
import yaml
from tao_bevfusion.core.errors import InputError
from tao_bevfusion.core.layout import launch_sidecar
from tao_bevfusion.service.specs import build_spec
from tao_bevfusion.specbuild.build import BuildSpecInput
from tao_bevfusion.specbuild.rules import rescaled_lr_schedule
from tao_bevfusion.specbuild.surface import ExperimentConfig
from tao_bevfusion.specbuild.surface.experiment import DEFAULT_LR_SCHEDULER

from tests.conftest import DATA, REPO

PREFIX = {"pts": "training/velodyne_reduced", "img": "training/image_2"}


def build(kitti: Path, action: str, **kw):
    return build_spec(BuildSpecInput(action=action, data_root=str(kitti), **kw))


def written(result) -> dict:
    return yaml.safe_load(Path(result.spec_path).read_text())


def fake_pth(folder: Path, name: str = "epoch_2.pth") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(b"\x80\x02weights")
    return folder / name


def problems_of(exc: pytest.ExceptionInfo) -> dict[str, str]:
    return {p.path: p.message + " | " + p.fix for p in exc.value.problems}


@pytest.mark.parametrize("action", ["train", "evaluate", "inference"])
def test_every_experiment_spec_validates_against_models_and_schema(kitti: Path, workspace: Path, action: str):
    kw = {} if action == "train" else {"checkpoint": str(fake_pth(workspace / "ckpt"))}
    r = build(kitti, action, **kw)
    spec = written(r)
    ExperimentConfig.model_validate(spec)
    schema = json.loads((REPO / "schemas" / f"{action}.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(spec)
    assert {k: v for k, v in spec.items() if k != "model"} == {k: v for k, v in r.spec.items() if k != "model"}
    assert r.spec["model"] == {}  # only what differs from the sample model (nothing, here)
    ds = spec["dataset"]
    assert ds["default_cam_key"] == "CAM2" and ds["root_dir"] == "/data"
    for split, pkl in (("train_dataset", "train"), ("val_dataset", "val"), ("test_dataset", "val")):
        assert ds[split]["data_prefix"] == PREFIX
        assert ds[split]["ann_file"] == f"/data/kitti_person_infos_{pkl}.pkl"
    assert spec["train"]["pretrained_checkpoint"] is None
    assert spec["model"]["img_backbone"]["init_cfg"] is None
    assert spec["results_dir"].startswith("/results/")
    mounts = {m.container: m for m in r.mounts}
    assert mounts["/data"].mode == "ro" and mounts[spec["results_dir"]].mode == "rw" and mounts["/specs"].mode == "ro"


def test_train_stubs_and_nulls(kitti: Path):
    spec = written(build(kitti, "train"))
    assert spec["evaluate"]["checkpoint"] == "" and spec["inference"]["checkpoint"] == ""
    assert spec["train"]["resume_training_checkpoint_path"] is None and spec["train"]["resume"] is False
    assert "resume_training_checkpoint_path: null" in Path(build(kitti, "train").spec_path).read_text()


def test_evaluate_needs_a_checkpoint_and_keeps_the_other_stub(kitti: Path, workspace: Path):
    with pytest.raises(InputError) as exc:
        build(kitti, "evaluate")
    assert "evaluate.checkpoint" in problems_of(exc)
    r = build(kitti, "evaluate", checkpoint=str(fake_pth(workspace / "runs" / "t1" / "train")))
    spec = written(r)
    assert spec["evaluate"]["checkpoint"] == "/inputs/model/epoch_2.pth" and spec["inference"]["checkpoint"] == ""
    assert {"host": str(workspace / "runs" / "t1" / "train"), "container": "/inputs/model", "mode": "ro"} in [
        m.model_dump() for m in r.mounts]


def test_non_pth_checkpoint_is_refused(kitti: Path, workspace: Path):
    onnx = fake_pth(workspace / "m", "model_best.onnx")
    with pytest.raises(InputError, match=r"not a \.pth"):
        build(kitti, "inference", checkpoint=str(onnx))


def test_pretrained_model_loads_the_55_way(kitti: Path, workspace: Path):
    ptm = fake_pth(workspace / "ptm", "bevfusion_ptm.pth")
    r = build(kitti, "train", pretrained_checkpoint=str(ptm))
    spec = written(r)
    assert spec["train"]["resume_training_checkpoint_path"] == "/inputs/weights/bevfusion_ptm.pth"
    assert spec["train"]["resume"] is False and spec["train"]["pretrained_checkpoint"] is None
    assert not any("random weights" in w for w in r.warnings)


def test_resume_sets_both_keys_and_drops_the_ptm(kitti: Path, workspace: Path):
    ckpt = fake_pth(workspace / "old" / "train", "epoch_3.pth")
    ptm = fake_pth(workspace / "ptm", "p.pth")
    r = build(kitti, "train", checkpoint=str(ckpt), resume=True, pretrained_checkpoint=str(ptm))
    spec = written(r)
    assert spec["train"]["resume"] is True
    assert spec["train"]["resume_training_checkpoint_path"] == "/inputs/weights/epoch_3.pth"
    assert any("pretrained model is used only when there is no resume" in w for w in r.warnings)
    with pytest.raises(InputError, match="resume=true needs"):
        build(kitti, "train", resume=True)


def test_pretrained_checkpoint_override_is_managed(kitti: Path):
    with pytest.raises(InputError) as exc:
        build(kitti, "train", overrides={"train.pretrained_checkpoint": "/x.pth"})
    assert "pretrained_checkpoint" in problems_of(exc)["overrides.train.pretrained_checkpoint"]


@pytest.mark.parametrize("epochs", [1, 2, 5, 10, 30])
def test_lr_schedule_follows_num_epochs(kitti: Path, epochs: int):
    spec = written(build(kitti, "train", overrides={"num_epochs": epochs}))
    sched = spec["train"]["lr_scheduler"]
    assert spec["train"]["num_epochs"] == epochs
    assert sched[0] == DEFAULT_LR_SCHEDULER[0]  # the 500-iteration warm-up stays
    assert sched[1]["T_max"] == epochs and sched[1]["end"] == epochs
    assert sched[2]["end"] == pytest.approx(0.24 * epochs) == sched[3]["begin"] and sched[3]["end"] == epochs
    if epochs == 10:
        assert sched == DEFAULT_LR_SCHEDULER


def test_user_schedule_must_match_num_epochs(kitti: Path):
    bad = rescaled_lr_schedule(10)
    with pytest.raises(InputError, match=r"train\.lr_scheduler"):
        build(kitti, "train", overrides={"train.num_epochs": 4, "train.lr_scheduler": bad})
    ok = rescaled_lr_schedule(4)
    assert written(build(kitti, "train", overrides={"train.num_epochs": 4, "train.lr_scheduler": ok}))[
        "train"]["lr_scheduler"] == ok


def test_swin_local_file_or_explicit_warning(kitti: Path, workspace: Path):
    swin = fake_pth(workspace / "ptm", "swin_tiny_patch4_window7_224.pth")
    r = build(kitti, "train", swin_checkpoint=str(swin))
    assert written(r)["model"]["img_backbone"]["init_cfg"] == {
        "type": "Pretrained", "checkpoint": "/inputs/swin/swin_tiny_patch4_window7_224.pth"}
    r = build(kitti, "train")
    assert written(r)["model"]["img_backbone"]["init_cfg"] is None
    assert any("random weights" in w and "never downloads" in w for w in r.warnings)
    assert "github.com" not in Path(r.spec_path).read_text()


def test_empty_init_cfg_override_cannot_bring_the_download_back(kitti: Path):
    with pytest.raises(InputError, match="swin_checkpoint"):
        build(kitti, "train", overrides={"model": {"img_backbone": {"init_cfg": {}}}})


def test_gpus_consistent_and_container_relative(kitti: Path, workspace: Path):
    ckpt = str(fake_pth(workspace / "c"))
    spec = written(build(kitti, "evaluate", checkpoint=ckpt, num_gpus=2))
    assert spec["evaluate"]["num_gpus"] == 2 and spec["evaluate"]["gpu_ids"] == [0, 1]
    assert spec["train"]["num_gpus"] == 2 and spec["train"]["gpu_ids"] == [0, 1]
    r = build(kitti, "train", overrides={"train.gpu_ids": [2, 3]})
    assert written(r)["train"]["gpu_ids"] == [0, 1] and written(r)["train"]["num_gpus"] == 2
    assert any("container-relative" in w for w in r.warnings)
    r = build(kitti, "inference", checkpoint=ckpt, num_gpus=4)
    assert written(r)["inference"]["num_gpus"] == 1 and written(r)["train"]["num_gpus"] == 1


def test_convert_writes_into_the_root(kitti: Path):
    r = build(kitti, "dataset_convert", results_dir=str(kitti.parent / "elsewhere"))
    spec = written(r)
    assert spec["root_dir"] == spec["results_dir"] == "/data" and spec["mode"] == "training"
    assert {m.container: m.mode for m in r.mounts}["/data"] == "rw"
    assert r.results_dir == str(kitti)
    assert written(build(kitti, "dataset_convert", overrides={"mode": "validation"}))["mode"] == "validation"


def test_local_backend_uses_host_paths(kitti: Path):
    spec = written(build(kitti, "train", backend="local"))
    assert spec["dataset"]["root_dir"] == str(kitti)
    assert spec["dataset"]["train_dataset"]["ann_file"] == f"{kitti}/kitti_person_infos_train.pkl"


def test_newer_keys_are_removed_or_refused(kitti: Path):
    r = build(kitti, "train", overrides={"model_name": "bevfusion", "wandb.group": "g", "evaluate.batch_size": 2})
    removed = {c.path for c in r.changes if c.reason == "newer than 5.5; removed"}
    assert removed == {"model_name", "wandb.group", "evaluate.batch_size"}
    assert "model_name" not in written(r)
    with pytest.raises(InputError) as exc:
        build(kitti, "train", strict=True, overrides={"train.checkpointer": {"save_top_k": 1}})
    assert "newer than 5.5" in problems_of(exc)["overrides.train.checkpointer"]


def test_a_7x_spec_as_base_is_cleaned(kitti: Path, workspace: Path):
    text7 = (DATA / "nvidia_reference" / "train_spec_7x.yaml").read_text()
    assert "&kitti_prefix" in text7 and "*kitti_prefix" in text7  # generated templates use anchors: they must load
    spec7 = yaml.safe_load(text7)
    assert spec7["model_name"] and spec7["train"]["checkpointer"] and "trt_engine" in spec7["evaluate"]
    assert spec7["model"]["img_backbone"]["init_cfg"] == {}
    base = workspace / "spec7.yaml"
    base.write_text(text7)  # the file as written, anchors included
    r = build(kitti, "train", base_spec=str(base))
    out = written(r)
    assert "model_name" not in out and "checkpointer" not in out["train"] and "trt_engine" not in out["evaluate"]
    assert out["model"]["img_backbone"]["init_cfg"] is None
    assert out["model"]["voxel_size"] == [0.075, 0.075, 0.2]
    assert any(c.path == "model.point_cloud_range" and "grid_size" in c.reason for c in r.changes)
    assert out["wandb"]["enable"] is True  # the base said true; harmless, and kept as given


def test_unknown_key_names_the_closest_valid_key(kitti: Path):
    with pytest.raises(InputError) as exc:
        build(kitti, "train", overrides={"train.num_epoch": 3, "dataset.train_dataset.batchsize": 2})
    probs = problems_of(exc)
    assert "train.num_epochs" in probs["train.num_epoch"]
    assert "dataset.train_dataset.batch_size" in probs["dataset.train_dataset.batchsize"]


@pytest.mark.parametrize("override,path", [
    ({"train.num_epochs": "two"}, "train.num_epochs"),
    ({"train.num_epochs": 0}, "train.num_epochs"),
    ({"dataset.train_dataset.num_workers": 0}, "dataset.train_dataset.num_workers"),
    ({"train.optimizer.lr": -1.0}, "train.optimizer.lr"),
    ({"inference.conf_threshold": 1.5}, "inference.conf_threshold"),
    ({"dataset.classes": ["person", "car"]}, "dataset.classes"),
    ({"input_modality.use_lidar": False}, "input_modality.use_lidar"),
    ({"default_hooks.logger.log_metric_by_epoch": False}, "default_hooks.logger.log_metric_by_epoch"),
])
def test_bad_values_are_errors_naming_the_path(kitti: Path, override: dict, path: str):
    with pytest.raises(InputError) as exc:
        build(kitti, "train", overrides=override)
    assert path in problems_of(exc)


def test_every_problem_is_reported_and_nothing_is_written(kitti: Path, workspace: Path):
    with pytest.raises(InputError) as exc:
        build(kitti, "evaluate", overrides={"train.num_epoch": 1, "model.voxel_size": [0.1, 0.1, 0.2],
                                            "dataset.root_dir": "/elsewhere"})
    assert {"train.num_epoch", "model.grid_size", "evaluate.checkpoint",
            "overrides.dataset.root_dir"} <= set(problems_of(exc))
    assert not (workspace / "home" / "specs").exists()


@pytest.mark.parametrize("field,value,msg", [
    ("data_root", "relative/kitti", "absolute"),
    ("data_root", "/tmp/../etc", "'..'"),
    ("data_root", "/etc", "outside the allowed roots"),
    ("checkpoint", "/nonexistent/epoch_1.pth", "outside the allowed roots"),
])
def test_bad_paths(kitti: Path, field: str, value: str, msg: str):
    kw = {"data_root": str(kitti), "action": "evaluate", field: value}
    with pytest.raises(InputError, match=msg):
        build_spec(BuildSpecInput(**kw))


def test_symlink_escaping_the_roots_is_refused(kitti: Path, workspace: Path, tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "epoch_1.pth").write_bytes(b"x")
    (workspace / "link.pth").symlink_to(outside / "epoch_1.pth")
    with pytest.raises(InputError, match="outside the allowed roots"):
        build(kitti, "evaluate", checkpoint=str(workspace / "link.pth"))


def test_output_path_must_be_yaml_and_inside_roots(kitti: Path, workspace: Path):
    with pytest.raises(InputError, match=r"\.yaml"):
        build(kitti, "train", output_path=str(workspace / "spec.yml"))
    r = build(kitti, "train", output_path=str(workspace / "out" / "train.yaml"))
    assert Path(r.spec_path) == workspace / "out" / "train.yaml" and launch_sidecar(Path(r.spec_path)).is_file()


def test_yaml_aliases_and_huge_files_are_refused(kitti: Path, workspace: Path):
    bomb = workspace / "bomb.yaml"
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"] + [
        f"a{i}: &a{i} [{', '.join([f'*a{i-1}'] * 10)}]" for i in range(1, 9)]
    bomb.write_text("\n".join(levels) + "\n")
    with pytest.raises(InputError, match="expand"):
        build(kitti, "train", base_spec=str(bomb))
    huge = workspace / "huge.yaml"
    huge.write_text("k: " + "x" * 1_100_000)
    with pytest.raises(InputError, match=r"larger|over"):
        build(kitti, "train", base_spec=str(huge))


def test_encryption_key_never_shown_back(kitti: Path):
    r = build(kitti, "train", encryption_key="s3cr3t-key")
    assert r.spec["encryption_key"] == "***"
    assert "s3cr3t-key" not in r.model_dump_json()
    assert "s3cr3t-key" not in launch_sidecar(Path(r.spec_path)).read_text()
    assert written(r)["encryption_key"] == "s3cr3t-key"


def test_spec_file_written_atomically_with_sidecar(kitti: Path):
    r = build(kitti, "train")
    side = json.loads(launch_sidecar(Path(r.spec_path)).read_text())
    assert side["spec_container_path"] == "/specs/train.yaml" and side["results_dir"] == r.results_dir
    assert not [p for p in os.listdir(Path(r.spec_path).parent) if p.endswith(".tmp")]
