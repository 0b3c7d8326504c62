"""build_spec: turn an agent's intent into a TAO 5.5 spec the container accepts, or list every problem.

Order: KITTI-correct base -> cleaned base_spec -> overrides -> enforced rules -> validation (typed models
and the generated JSON Schema) -> atomic write of the spec and its launch sidecar. Nothing is written
unless every check passes.
"""

import copy
import hashlib
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tools import layout as names
from tools.backends.registry import backend_class
from tools.errors import InputError, Problem, problem
from tools.paths import Mount, MountLayout, container_name, host_path
from tools.settings import AppContext, Settings, app_context, skill_dir
from tools.spec import rules as specrules
from tools.spec.schema import action_schema, dump_yaml
from tools.spec.sidecar import LaunchSidecar, sign
from tools.spec.surface import ConvertConfig, ExperimentConfig
from tools.spec.surface.experiment import MISSING
from tools.spec.surface.recommended import GEOMETRY, KITTI_PREFIX, recommended_spec

Action = Literal["dataset_convert", "train", "evaluate", "inference"]
SECRET_MASK = "***"
# Keys whose values are host paths or job wiring: set through arguments, never through overrides.
MANAGED = {
    "results_dir": "results_dir", "root_dir": "data_root", "dataset.root_dir": "data_root",
    "dataset.train_dataset.ann_file": "data_root", "dataset.val_dataset.ann_file": "data_root",
    "dataset.test_dataset.ann_file": "data_root", "evaluate.checkpoint": "checkpoint or parent_job_id",
    "inference.checkpoint": "checkpoint or parent_job_id",
    "train.resume_training_checkpoint_path": "checkpoint (with resume=true) or pretrained_checkpoint",
    "train.pretrained_checkpoint": "pretrained_checkpoint", "encryption_key": "encryption_key",
    "model.img_backbone.init_cfg": "swin_checkpoint", "dataset.img_file": "(not supported)",
    "dataset.pc_file": "(not supported)",
}


# The dataclass default geometry (shipped by NVIDIA's template) gives a 1408x1600 grid against 1440x1440.
STALE_GEOMETRY = {"point_cloud_range": [0, -40, -3, 70.4, 40, 1], "voxel_size": [0.05, 0.05, 0.1]}


class BuildSpecInput(BaseModel):
    """Inputs of build_spec (also the MCP tool's input schema)."""

    model_config = ConfigDict(extra="forbid")

    action: Action = Field(description="dataset_convert, train, evaluate or inference.")
    data_root: str = Field(description="Absolute HOST path of the KITTI root (ImageSets/, training/).",
                           max_length=4096)
    results_dir: str | None = Field(default=None, max_length=4096, description=(
        "Absolute host folder for this job's outputs; fresh per job. Default: a new folder under the "
        "state dir. Ignored for dataset_convert, which always writes into data_root."))
    overrides: dict[str, Any] | None = Field(default=None, description=(
        "Spec changes, dotted ('train.num_epochs': 2) or nested ({'train': {'num_epochs': 2}}). "
        "Shorthands: num_epochs, batch_size (train split), learning_rate. Paths are set by the other arguments."))
    base_spec: str | None = Field(default=None, max_length=4096, description=(
        "Absolute host path of an existing spec YAML to start from (e.g. a 7.x spec); newer keys are removed."))
    parent_job_id: str | None = Field(default=None, max_length=64, description=(
        "A train job from list_jobs: evaluate/inference take its checkpoint (see choose/epoch); "
        "train fine-tunes from it, or resumes it with resume=true."))
    checkpoint: str | None = Field(default=None, max_length=4096, description=(
        "Absolute host path of a .pth: the model to evaluate/infer, or for train the checkpoint to resume "
        "(with resume=true) or fine-tune from."))
    choose: Literal["best", "final", "latest"] | None = Field(default=None, description=(
        "Which checkpoint of parent_job_id: best (highest val AP11), final (last epoch), latest (newest file)."))
    epoch: int | None = Field(default=None, ge=1, description="Exact epoch of parent_job_id to use.")
    resume: bool = Field(default=False, description="train only: continue the checkpoint's run (optimizer, epoch).")
    pretrained_checkpoint: str | None = Field(default=None, max_length=4096, description=(
        "train only: absolute host path of a full BEVFusion .pth to fine-tune from (ignored when resuming)."))
    swin_checkpoint: str | None = Field(default=None, max_length=4096, description=(
        "Absolute host path of swin_tiny_patch4_window7_224.pth; without it the spec never downloads "
        "and the Swin backbone starts from random weights."))
    num_gpus: int | None = Field(default=None, ge=1, le=16, description="GPUs for the running action.")
    encryption_key: str | None = Field(default=None, max_length=512, description=(
        "Model key, written to the spec file only; never shown back."))
    output_path: str | None = Field(default=None, max_length=4096, description=(
        "Absolute host path for the spec (.yaml). Default: a new folder under the state dir."))
    backend: str = Field(default="docker", max_length=64, description=(
        "Where the job will run: docker (container paths /data, /results/...) or local (host paths unchanged)."))
    strict: bool = Field(default=False, description="Error on 7.x-only keys instead of removing them.")


class Change(BaseModel):
    path: str = Field(description="Spec key that build_spec set or changed.")
    value: Any = Field(default=None, description="The value written (secrets masked).")
    reason: str = Field(description="Why.")


class BuildSpecResult(BaseModel):
    action: str = Field(description="The action the spec is for.")
    spec_path: str = Field(description="Host path of the written spec; pass it to run_action.")
    spec: dict[str, Any] = Field(description=(
        "The validated spec (secrets masked). `model` lists only keys that differ from the 5.5 sample model; "
        "the full file is at spec_path."))
    mounts: list[Mount] = Field(description="Host -> container mounts the launch will use.")
    results_dir: str = Field(description="Host folder the job writes to.")
    data_root: str = Field(description="The resolved host dataset root.")
    changes: list[Change] = Field(description="What was set for you, with reasons.")
    warnings: list[str] = Field(description="Things to know before launching.")
    checkpoint_choice: dict[str, Any] | None = Field(default=None, description="How the parent checkpoint was picked.")


class _Draft:
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


def _get(spec: dict[str, Any], path: str, default: Any = None) -> Any:
    cursor: Any = spec
    for part in path.split("."):
        if not isinstance(cursor, dict) or part not in cursor:
            return default
        cursor = cursor[part]
    return cursor


def _spec_location(req: BuildSpecInput, settings: Settings, stamp: str) -> Path:
    if req.output_path:
        out = host_path(req.output_path, "output_path", settings, kind="file", must_exist=False)
        if out.suffix != ".yaml":
            raise InputError(problem("output_path", "the 5.5 launcher validates only '.yaml' spec files",
                                         f"use {out.with_suffix('.yaml')}", value=req.output_path))
        if out.exists() and out.is_dir():
            raise InputError(problem("output_path", "is a directory", "give a file path ending in .yaml"))
        return out
    return settings.home / "specs" / stamp / f"{req.action}.yaml"


def _results_location(req: BuildSpecInput, settings: Settings, data_root: Path, stamp: str, draft: _Draft) -> Path:
    if req.action == "dataset_convert":
        if req.results_dir and Path(req.results_dir) != data_root:
            draft.warnings.append("dataset_convert writes into data_root (5.5 reads the pickles back from "
                                "root_dir); results_dir was ignored")
        return data_root
    if req.results_dir:
        return host_path(req.results_dir, "results_dir", settings, must_exist=False)
    return settings.home / "runs" / stamp


def _checkpoint_file(raw: str, field: str, settings: Settings) -> Path:
    path = host_path(raw, field, settings, kind="file")
    if path.suffix != ".pth":
        raise InputError(problem(field, f"{path.name} is not a .pth checkpoint (5.5 loads PyTorch .pth only)",
                                     "pass an epoch_<N>.pth file", value=raw))
    return path


def _resolve_parent(req: BuildSpecInput, settings: Settings) -> tuple[Path, dict[str, Any]]:
    from tools.evidence.checkpoints import resolve_parent_checkpoint

    choose = req.choose
    if choose is None and req.epoch is None and req.action == "train" and req.resume:
        choose = "latest"  # resuming continues the newest checkpoint: the request itself asks for latest
    res = resolve_parent_checkpoint(parent_job_id=req.parent_job_id, choose=choose, epoch=req.epoch,
                                    ctx=AppContext(settings))
    return Path(res.path), res.model_dump()


def _apply_user_layers(req: BuildSpecInput, spec: dict[str, Any], draft: _Draft, settings: Settings) -> None:
    node = ConvertConfig if req.action == "dataset_convert" else ExperimentConfig
    layers: list[tuple[str, dict[str, Any]]] = []
    if req.base_spec:
        from tools.yamlio import load_yaml_file

        base = load_yaml_file(host_path(req.base_spec, "base_spec", settings, kind="file"))
        if not isinstance(base, dict):
            draft.problems.append(problem("base_spec", "the file is not a YAML mapping", "pass a TAO spec file"))
            return
        for key in [k for k in MANAGED if _get(base, k) is not None]:
            _drop(base, key)  # paths in a foreign spec are replaced by this job's own
        model = base.get("model")
        if isinstance(model, dict) and all(model.get(k) == v for k, v in STALE_GEOMETRY.items()):
            for key in STALE_GEOMETRY:
                model.pop(key)
            draft.changes.append(Change(path="model.point_cloud_range", value=GEOMETRY["point_cloud_range"],
                                      reason="base_spec had the 5.5 dataclass geometry, which does not match "
                                      "grid_size 1440; replaced with the 5.5 sample geometry (with voxel_size)"))
        layers.append(("base_spec", base))
    if req.overrides:
        nested, probs = specrules.nest_overrides(req.overrides)
        draft.problems += probs
        for path in sorted(specrules.flat_paths(nested)):
            if path in MANAGED:
                draft.problems.append(problem(f"overrides.{path}", "this key is set by build_spec from its arguments",
                                            f"use the `{MANAGED[path]}` argument instead", code="MANAGED_KEY"))
                _drop(nested, path)
        layers.append(("overrides", nested))
    for origin, layer in layers:
        errors, removed = specrules.strip_newer_keys(layer, req.strict)
        draft.problems += [p.model_copy(update={"path": f"{origin}.{p.path}"}) for p in errors]
        for path in removed:
            draft.changes.append(Change(path=path, value=None, reason="newer than 5.5; removed"))
        draft.problems += specrules.unknown_keys(layer, node)
        if not errors:
            specrules.deep_merge(spec, layer)


def _drop(data: dict[str, Any], path: str) -> None:
    *parents, leaf = path.split(".")
    cursor: Any = data
    for part in parents:
        cursor = cursor.get(part) if isinstance(cursor, dict) else None
    if isinstance(cursor, dict):
        cursor.pop(leaf, None)


def _convert_rules(spec: dict[str, Any], layout: MountLayout, data_root: Path, draft: _Draft) -> None:
    root = layout.add(data_root, "/data", "rw")
    draft.set(spec, "root_dir", root, "dataset root (container path)")
    draft.set(spec, "results_dir", root, "5.5 convert writes the pickles to results_dir and reads them back from "
            "root_dir, so they must be equal")
    if bool(spec.get("per_sequence")) != bool(spec.get("sequence_list")):
        draft.problems.append(problem("per_sequence", "per_sequence and sequence_list must be set together",
                                    "set both or neither"))


def _weights(req: BuildSpecInput, spec: dict[str, Any], layout: MountLayout, draft: _Draft, settings: Settings,
             result: dict[str, Any]) -> None:
    """Checkpoints for every action, the 5.5 way (contract §2.3, §2.6)."""
    ckpt: Path | None = None
    if req.checkpoint:
        ckpt = _checkpoint_file(req.checkpoint, "checkpoint", settings)
    elif req.parent_job_id:
        ckpt, result["checkpoint_choice"] = _resolve_parent(req, settings)
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
        draft.set(spec, f"{req.action}.checkpoint", layout.file(ckpt, "/inputs/model"), "model to load")
        return
    for action in ("evaluate", "inference"):
        draft.set(spec, f"{action}.checkpoint", "", "5.5 materialises every action: the idle stub must be ''")
    ptm = _checkpoint_file(req.pretrained_checkpoint, "pretrained_checkpoint", settings) \
        if req.pretrained_checkpoint else None
    if ckpt is not None and ptm is not None:
        draft.warnings.append("both a resume/parent checkpoint and pretrained_checkpoint were given; the pretrained "
                            "model is used only when there is no resume checkpoint, so it was dropped")
        ptm = None
    load = ckpt or ptm
    resume = bool(req.resume and ckpt is not None)
    if req.resume and ckpt is None:
        draft.problems.append(problem("resume", "resume=true needs the checkpoint to continue",
                                    "pass checkpoint=<host epoch_N.pth> or parent_job_id=<train job>"))
    path = layout.file(load, "/inputs/weights") if load else None
    why = ("resume: restores weights, optimizer and epoch" if resume else
           "fine-tune: 5.5 loads weights only through this key (train.pretrained_checkpoint is ignored)"
           if load else "train from scratch: null, never ''")
    draft.set(spec, "train.resume_training_checkpoint_path", path, why)
    draft.set(spec, "train.resume", resume, "set together with the checkpoint path")


def _swin(req: BuildSpecInput, spec: dict[str, Any], layout: MountLayout, draft: _Draft, settings: Settings) -> None:
    if req.swin_checkpoint:
        swin = _checkpoint_file(req.swin_checkpoint, "swin_checkpoint", settings)
        cfg = {"type": "Pretrained", "checkpoint": layout.file(swin, "/inputs/swin")}
        draft.set(spec, "model.img_backbone.init_cfg", cfg, "local Swin weights: no download")
        return
    draft.set(spec, "model.img_backbone.init_cfg", None, "null stops the GitHub download ({} does not)")
    if req.action == "train" and not _get(spec, "train.resume_training_checkpoint_path"):
        draft.warnings.append("no swin_checkpoint: the Swin image backbone starts from random weights (the spec "
                            "never downloads). Pass swin_checkpoint=<host swin_tiny_patch4_window7_224.pth> or "
                            "pretrained_checkpoint=<full BEVFusion .pth> for a useful model")


def _gpus(req: BuildSpecInput, spec: dict[str, Any], draft: _Draft) -> None:
    action = req.action
    requested = req.num_gpus or _get(spec, f"{action}.num_gpus") or 1
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
    if action != "train":
        draft.set(spec, "train.num_gpus", requested, "5.5 decides DDP from train.num_gpus in every action")
        draft.set(spec, "train.gpu_ids", ids, "kept equal to the running action")
        draft.set(spec, "train.num_nodes", _get(spec, f"{action}.num_nodes", 1), "kept equal to the running action")


def _experiment_rules(req: BuildSpecInput, spec: dict[str, Any], layout: MountLayout, data_root: Path,
                      results: Path, draft: _Draft, settings: Settings, result: dict[str, Any]) -> None:
    root = layout.add(data_root, "/data", "ro")
    draft.set(spec, "results_dir", layout.add(results, f"/results/{container_name(results)}", "rw"),
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
    if not _get(spec, "input_modality.use_lidar", True):
        draft.problems.append(problem("input_modality.use_lidar", "LiDAR is mandatory for BEVFusion",
                                    "set true (use_camera: false gives a LiDAR-only model)"))
    if _get(spec, "default_hooks.logger.log_metric_by_epoch", True) is not True:
        draft.problems.append(problem("default_hooks.logger.log_metric_by_epoch", "must stay true (the 5.5 logger "
                                    "hook fails at validation otherwise)", "remove the override"))
    _weights(req, spec, layout, draft, settings, result)
    _swin(req, spec, layout, draft, settings)
    _gpus(req, spec, draft)
    epochs = _get(spec, "train.num_epochs", 10)
    user_sched = req.overrides and any(k.startswith("train.lr_scheduler") or (k == "train" and
                                       isinstance(v, dict) and "lr_scheduler" in v)
                                       for k, v in req.overrides.items())
    if isinstance(epochs, int) and not isinstance(epochs, bool):
        if user_sched:
            draft.problems += specrules.lr_schedule_problems(_get(spec, "train.lr_scheduler"), epochs)
        else:
            draft.set(spec, "train.lr_scheduler", specrules.rescaled_lr_schedule(epochs),
                    f"the 5.5 schedule is built for 10 epochs; rescaled to num_epochs={epochs}")
    if req.encryption_key:
        spec["encryption_key"] = req.encryption_key
        draft.changes.append(Change(path="encryption_key", value=SECRET_MASK, reason="from the caller (masked)"))
    draft.problems += specrules.geometry_problems(spec["model"])


def _validate(action: str, spec: dict[str, Any], draft: _Draft) -> None:
    node = ConvertConfig if action == "dataset_convert" else ExperimentConfig
    try:
        node.model_validate(spec)
    except ValidationError as exc:
        known = {p.path for p in draft.problems}
        draft.problems += [p for p in specrules.pydantic_problems(exc) if p.path not in known]
    for running in ("evaluate", "inference"):
        if _get(spec, f"{running}.checkpoint") == MISSING and not any(
                p.path == f"{running}.checkpoint" for p in draft.problems):
            draft.problems.append(problem(f"{running}.checkpoint", "still '???' (MissingMandatoryValue in 5.5)",
                                        "pass checkpoint= or parent_job_id="))
    if draft.problems:
        return
    import jsonschema  # imported here: it costs ~0.1 s and only build_spec needs it

    validator = jsonschema.Draft202012Validator(_schema(action))
    for err in validator.iter_errors(spec):
        draft.problems.append(problem(".".join(map(str, err.absolute_path)) or "<spec>", err.message,
                                    "see schemas/<action>.schema.json", code="SCHEMA"))


def _schema(action: str) -> dict[str, Any]:
    path = skill_dir() / "schemas" / f"{action}.schema.json"
    try:
        loaded: dict[str, Any] = json.loads(path.read_text())
        return loaded
    except (OSError, ValueError):
        return action_schema(action)


def _diff(value: Any, base: Any) -> Any:
    if isinstance(value, dict) and isinstance(base, dict):
        out = {k: _diff(v, base.get(k)) for k, v in value.items() if v != base.get(k)}
        return out
    return value


def compact(spec: dict[str, Any], action: str) -> dict[str, Any]:
    """The spec with `model` reduced to what differs from the recommended model (keeps results small)."""
    if "model" not in spec:
        return spec
    return {**spec, "model": _diff(spec["model"], recommended_spec(action)["model"])}


def masked(spec: dict[str, Any]) -> dict[str, Any]:
    shown = copy.deepcopy(spec)
    if shown.get("encryption_key"):
        shown["encryption_key"] = SECRET_MASK
    return shown


def _write_atomic(path: Path, text: str, mode: int = 0o600) -> None:
    """Write via a private temp file and rename; the temp file never outlives a failure."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(problem(str(path), f"cannot write the spec: {exc.strerror}",
                                 "free disk space or choose a writable output_path; nothing was written")) from exc


def build_spec(req: BuildSpecInput, ctx: AppContext | None = None) -> BuildSpecResult:
    """Build, validate and write a 5.5 spec. Raises InputError listing every problem (nothing written)."""
    settings = (ctx or app_context()).settings
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)
    maps_paths = backend_class(req.backend).capabilities.maps_paths_into_container
    draft = _Draft()
    data_root = host_path(req.data_root, "data_root", settings)
    results = _results_location(req, settings, data_root, stamp, draft)
    spec_path = _spec_location(req, settings, stamp)
    layout = MountLayout(maps_paths)
    spec = recommended_spec(req.action)
    result: dict[str, Any] = {}
    _apply_user_layers(req, spec, draft, settings)
    if req.action == "dataset_convert":
        _convert_rules(spec, layout, data_root, draft)
    else:
        _experiment_rules(req, spec, layout, data_root, results, draft, settings, result)
    layout.add(spec_path.parent, "/specs", "ro")
    _validate(req.action, spec, draft)
    if draft.problems:
        raise InputError(draft.problems, headline=f"cannot build a valid 5.5 {req.action} spec")
    text = dump_yaml(spec)
    _write_atomic(spec_path, text)
    sidecar = LaunchSidecar(action=req.action, backend=req.backend, data_root=str(data_root),
                            results_dir=str(results), mounts=layout.mounts,
                            spec_sha256=hashlib.sha256(text.encode()).hexdigest(),
                            spec_container_path=layout.to_container(spec_path),
                            checkpoint_choice=result.get("checkpoint_choice"),
                            num_epochs=_get(spec, "train.num_epochs"), parent_job_id=req.parent_job_id)
    _write_atomic(names.launch_sidecar(spec_path), sign(sidecar, settings.home).model_dump_json(indent=2))
    return BuildSpecResult(action=req.action, spec_path=str(spec_path), spec=compact(masked(spec), req.action),
                           mounts=layout.mounts,
                           results_dir=str(results), data_root=str(data_root), changes=draft.changes,
                           warnings=draft.warnings, checkpoint_choice=result.get("checkpoint_choice"))
