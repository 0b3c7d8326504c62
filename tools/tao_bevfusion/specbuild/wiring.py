"""The rules build_spec enforces on a 5.5 spec: dataset wiring, weights, Swin, GPUs, schedule, geometry
(docs/container-contract.md §2.3-§2.8, §3). Each change is recorded with its reason in a Draft."""

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from tao_bevfusion.core import layout as names
from tao_bevfusion.core.dotted import get_path
from tao_bevfusion.core.errors import InputError, Problem, problem
from tao_bevfusion.core.paths import MountLayout, container_name
from tao_bevfusion.core.redact import MASK as SECRET_MASK
from tao_bevfusion.specbuild import lr_scaling
from tao_bevfusion.specbuild import rules as specrules
from tao_bevfusion.specbuild.inputs import HostInputs
from tao_bevfusion.specbuild.parent import ParentRun
from tao_bevfusion.specbuild.surface.recommended import KITTI_PREFIX

if TYPE_CHECKING:
    from tao_bevfusion.specbuild.build import BuildSpecInput



class Change(BaseModel):
    path: str = Field(description="Spec key that build_spec set or changed.")
    value: Any = Field(default=None, description="The value written (secrets masked).")
    reason: str = Field(description="Why.")


class Draft:
    """What build_spec collects on the way: changes made, warnings, problems."""

    def __init__(self) -> None:
        self.changes: list[Change] = []
        self.warnings: list[str] = []
        self.problems: list[Problem] = []

    def set(self, spec: dict[str, Any], path: str, value: Any, reason: str) -> None:
        *parents, leaf = path.split(".")
        cursor = spec
        for part in parents:
            cursor = cursor.setdefault(part, {})
        if cursor.get(leaf, object()) != value:
            cursor[leaf] = copy.deepcopy(value)
            self.changes.append(Change(path=path, value=value, reason=reason))


def _parent_checkpoint(parent: ParentRun | None) -> tuple[Path, dict[str, Any]]:
    if parent is None or parent.checkpoint is None:
        raise InputError(problem("parent_job_id", "the parent's checkpoint was not resolved before the build",
                                 "call build_spec through the tool (it resolves parent_job_id once)"))
    return Path(parent.checkpoint["path"]), dict(parent.checkpoint)


def convert_rules(spec: dict[str, Any], layout: MountLayout, data_root: Path, draft: Draft) -> None:
    root = layout.add(data_root, names.DATA_MOUNT, "rw")
    draft.set(spec, "root_dir", root, "dataset root (container path)")
    draft.set(spec, "results_dir", root, "5.5 convert writes the pickles to results_dir and reads them back from "
            "root_dir, so they must be equal")
    if bool(spec.get("per_sequence")) != bool(spec.get("sequence_list")):
        draft.problems.append(problem("per_sequence", "per_sequence and sequence_list must be set together",
                                    "set both or neither"))


def _weights(req: "BuildSpecInput", spec: dict[str, Any], layout: MountLayout, draft: Draft,
             inputs: HostInputs, result: dict[str, Any]) -> None:
    """Checkpoints for every action, the 5.5 way (contract §2.3, §2.6)."""
    ckpt: Path | None = None
    if inputs.checkpoint:
        ckpt = inputs.checkpoint
    elif req.parent_job_id:
        ckpt, result["checkpoint_choice"] = _parent_checkpoint(inputs.parent)
    draft.set(spec, "train.pretrained_checkpoint", None, "5.5 never reads it; null, never ''")
    if req.action in ("evaluate", "inference"):
        other = "inference" if req.action == "evaluate" else "evaluate"
        draft.set(spec, f"{other}.checkpoint", "", "5.5 materialises every action: the idle stub must be ''")
        draft.set(spec, "train.resume_training_checkpoint_path", None, "no training in this action")
        draft.set(spec, "train.resume", False, "no training in this action")
        if ckpt is None:
            draft.problems.append(problem(f"{req.action}.checkpoint", "no model to load",
                                        "pass checkpoint=<host .pth> or parent_job_id=<train job>"))
            return
        draft.set(spec, f"{req.action}.checkpoint", layout.file(ckpt, names.INPUT_MOUNTS["model"]), "model to load")
        return
    for action in ("evaluate", "inference"):
        draft.set(spec, f"{action}.checkpoint", "", "5.5 materialises every action: the idle stub must be ''")
    ptm = inputs.pretrained
    if ckpt is not None and ptm is not None:
        draft.warnings.append("both a resume/parent checkpoint and pretrained_checkpoint were given; the pretrained "
                            "model is used only when there is no resume checkpoint, so it was dropped")
        ptm = None
    load = ckpt or ptm
    resume = bool(req.resume and ckpt is not None)
    if req.resume and ckpt is None:
        draft.problems.append(problem("resume", "resume=true needs the checkpoint to continue",
                                    "pass checkpoint=<host epoch_N.pth> or parent_job_id=<train job>"))
    path = layout.file(load, names.INPUT_MOUNTS["weights"]) if load else None
    why = ("resume: restores weights, optimizer and epoch" if resume else
           "fine-tune: 5.5 loads weights only through this key (train.pretrained_checkpoint is ignored)"
           if load else "train from scratch: null, never ''")
    draft.set(spec, "train.resume_training_checkpoint_path", path, why)
    draft.set(spec, "train.resume", resume, "set together with the checkpoint path")


def _swin(req: "BuildSpecInput", spec: dict[str, Any], layout: MountLayout, draft: Draft,
          swin: Path | None) -> None:
    if swin is not None:
        cfg = {"type": "Pretrained", "checkpoint": layout.file(swin, names.INPUT_MOUNTS["swin"])}
        draft.set(spec, "model.img_backbone.init_cfg", cfg, "local Swin weights: no download")
        return
    draft.set(spec, "model.img_backbone.init_cfg", None, "null stops the GitHub download ({} does not)")
    if req.action == "train" and not get_path(spec, "train.resume_training_checkpoint_path"):
        draft.warnings.append("no swin_checkpoint: the Swin image backbone starts from random weights (the spec "
                            "never downloads). Pass swin_checkpoint=<host swin_tiny_patch4_window7_224.pth> or "
                            "pretrained_checkpoint=<full BEVFusion .pth> for a useful model")


def _gpus(req: "BuildSpecInput", spec: dict[str, Any], draft: Draft) -> None:
    action = req.action
    requested = req.num_gpus or get_path(spec, f"{action}.num_gpus") or 1
    user_ids = specrules.nest_overrides(req.overrides or {})[0].get(action, {})
    given_ids = user_ids.get("gpu_ids") if isinstance(user_ids, dict) else None
    if isinstance(given_ids, list) and len(given_ids) > requested and req.num_gpus is None:
        requested = len(given_ids)
    if action == "inference" and requested > 1:
        draft.warnings.append("5.5 inference always runs on cuda:0; num_gpus set to 1")
        requested = 1
    ids = list(range(requested))
    if isinstance(given_ids, list) and given_ids != ids:
        draft.warnings.append(f"{action}.gpu_ids {given_ids} replaced by {ids}: ids are container-relative; "
                            "choose host GPUs with run_action(gpus=[...])")
    draft.set(spec, f"{action}.num_gpus", requested, "GPUs for the running action")
    draft.set(spec, f"{action}.gpu_ids", ids, "container-relative ids, len == num_gpus")
    nodes = _nodes(req, spec, requested, draft)
    if action != "train":
        draft.set(spec, "train.num_gpus", requested, "5.5 decides DDP from train.num_gpus in every action")
        draft.set(spec, "train.gpu_ids", ids, "kept equal to the running action")
        draft.set(spec, "train.num_nodes", nodes, "kept equal to the running action")


def _nodes(req: "BuildSpecInput", spec: dict[str, Any], gpus: int, draft: Draft) -> int:
    """<action>.num_nodes (and train.num_nodes) for the backend; the multi-node rules of contract §9.2."""
    from tao_bevfusion.backends.registry import backend_class, multi_node_backends

    nodes = req.num_nodes or get_path(spec, f"{req.action}.num_nodes") or 1
    if not isinstance(nodes, int) or nodes == 1:
        draft.set(spec, f"{req.action}.num_nodes", 1, "one node")
        return 1
    if req.action != "train":
        draft.problems.append(problem("num_nodes", f"{req.action} runs on one node", "set num_nodes=1"))
    elif gpus < 2:
        draft.problems.append(problem("num_gpus", f"{nodes} nodes with 1 GPU each: 5.5 starts distributed training "
                                      "only when train.num_gpus > 1, so the nodes would run separate, unrelated "
                                      "trainings (docs/container-contract.md §9.2)",
                                      "set num_gpus >= 2 (GPUs per node), or num_nodes=1"))
    elif not backend_class(req.backend).capabilities.multi_node:
        draft.problems.append(problem("num_nodes", f"{nodes} nodes asked, but the {req.backend} backend runs one node",
                                      f"use backend= one of {multi_node_backends()}, or num_nodes=1"))
    draft.set(spec, f"{req.action}.num_nodes", nodes, "nodes for the job (num_gpus is per node)")
    draft.set(spec, "train.num_nodes", nodes, "kept equal to the running action")
    return nodes


def experiment_rules(req: "BuildSpecInput", spec: dict[str, Any], layout: MountLayout, inputs: HostInputs,
                     draft: Draft, result: dict[str, Any]) -> None:
    data_root, results = inputs.data_root, inputs.results
    root = layout.add(data_root, names.DATA_MOUNT, "ro")
    draft.set(spec, "results_dir", layout.add(results, f"{names.RESULTS_MOUNT}/{container_name(results)}", "rw"),
            "fresh per-job results folder")
    draft.set(spec, "dataset.root_dir", root, "dataset root (container path)")
    for split, pkl in names.SPEC_SPLIT_PICKLES:
        draft.set(spec, f"dataset.{split}.ann_file", f"{root}/{names.info_pickle_name(pkl)}",
                "written by dataset_convert into the dataset root (test reuses val)")
        draft.set(spec, f"dataset.{split}.data_prefix", KITTI_PREFIX,
                "the 5.5 converter writes velodyne_reduced; both keys set because dicts merge")
    if spec["dataset"].get("type") == "KittiPersonDataset":
        draft.set(spec, "dataset.default_cam_key", "CAM2", "KITTI pickles store the image under CAM2")
    if spec["dataset"].get("classes") != ["person"]:
        draft.problems.append(problem("dataset.classes", "5.5 BEVFusion trains the `person` class only",
                                    "keep ['person']", value=spec["dataset"].get("classes")))
    if not get_path(spec, "input_modality.use_lidar", True):
        draft.problems.append(problem("input_modality.use_lidar", "LiDAR is mandatory for BEVFusion",
                                    "set true (use_camera: false gives a LiDAR-only model)"))
    if get_path(spec, "default_hooks.logger.log_metric_by_epoch", True) is not True:
        draft.problems.append(problem("default_hooks.logger.log_metric_by_epoch", "must stay true (the 5.5 logger "
                                    "hook fails at validation otherwise)", "remove the override"))
    _weights(req, spec, layout, draft, inputs, result)
    _swin(req, spec, layout, draft, inputs.swin)
    _gpus(req, spec, draft)
    epochs = get_path(spec, "train.num_epochs", 10)
    user_sched = req.overrides and any(k.startswith("train.lr_scheduler") or (k == "train" and
                                       isinstance(v, dict) and "lr_scheduler" in v)
                                       for k, v in req.overrides.items())
    if isinstance(epochs, int) and not isinstance(epochs, bool):
        if user_sched:
            draft.problems += specrules.lr_schedule_problems(get_path(spec, "train.lr_scheduler"), epochs)
        else:
            draft.set(spec, "train.lr_scheduler", specrules.rescaled_lr_schedule(epochs),
                    f"the 5.5 schedule is built for 10 epochs; rescaled to num_epochs={epochs}")
    scaled = lr_scaling.scaled_for(spec, req.overrides, req.scale_lr, resuming=bool(req.resume))
    if scaled:
        draft.set(spec, lr_scaling.LR_KEY, *scaled)
    if req.encryption_key:
        spec["encryption_key"] = req.encryption_key
        draft.changes.append(Change(path="encryption_key", value=SECRET_MASK, reason="from the caller (masked)"))
    draft.problems += specrules.geometry_problems(spec["model"])


