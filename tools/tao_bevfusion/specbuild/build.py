"""build_spec: turn an agent's intent into a TAO 5.5 spec the container accepts, or list every problem.

Order: KITTI-correct base -> cleaned base_spec -> overrides -> enforced rules -> validation (typed models
and the generated JSON Schema) -> atomic write of the spec and its launch sidecar. Nothing is written
unless every check passes.
"""

import errno
import hashlib
import json
import secrets
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tao_bevfusion.backends.registry import backend_class
from tao_bevfusion.core import layout as names
from tao_bevfusion.core.actions import Action
from tao_bevfusion.core.dotted import drop_path, get_path
from tao_bevfusion.core.errors import EngineError, InputError, problem
from tao_bevfusion.core.fsio import atomic_write
from tao_bevfusion.core.paths import Mount, MountLayout
from tao_bevfusion.core.redact import mask_keys
from tao_bevfusion.core.settings import HasSettings, Settings, settings_of, skill_dir
from tao_bevfusion.specbuild import resume
from tao_bevfusion.specbuild import rules as specrules
from tao_bevfusion.specbuild.inputs import HostInputs, output_exists, resolve_inputs
from tao_bevfusion.specbuild.limits import override_problems
from tao_bevfusion.specbuild.parent import ParentRun
from tao_bevfusion.specbuild.schema import action_schema, dump_yaml
from tao_bevfusion.specbuild.sidecar import LaunchSidecar, sign
from tao_bevfusion.specbuild.surface import ConvertConfig, ExperimentConfig
from tao_bevfusion.specbuild.surface.experiment import MISSING
from tao_bevfusion.specbuild.surface.recommended import GEOMETRY, recommended_spec
from tao_bevfusion.specbuild.wiring import (
    Change,
    Draft,
    convert_rules,
    experiment_rules,
)

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
    # Each action's own results_dir moves its outputs away from the folder the verdict checks.
    "train.results_dir": "results_dir", "evaluate.results_dir": "results_dir",
    "inference.results_dir": "results_dir",
}


# The dataclass default geometry (shipped by NVIDIA's template) gives a 1408x1600 grid against 1440x1440.
STALE_GEOMETRY = {"point_cloud_range": [0, -40, -3, 70.4, 40, 1], "voxel_size": [0.05, 0.05, 0.1]}


class BuildSpecInput(BaseModel):
    """Inputs of build_spec (also the MCP tool's input schema)."""

    # Errors never echo inputs: an encryption_key or a 3 MB override must not come back in them.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

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
    scale_lr: bool = Field(default=True, description=(
        "train only: scale the learning rate linearly with the global batch (batch_size x num_gpus x num_nodes) "
        "against the 5.5 reference (lr 2e-4 at 4 x 1 GPU x 1 node); false keeps 2e-4. An lr override wins."))
    pretrained_checkpoint: str | None = Field(default=None, max_length=4096, description=(
        "train only: absolute host path of a full BEVFusion .pth to fine-tune from (ignored when resuming)."))
    swin_checkpoint: str | None = Field(default=None, max_length=4096, description=(
        "Absolute host path of swin_tiny_patch4_window7_224.pth; without it the spec never downloads "
        "and the Swin backbone starts from random weights."))
    num_gpus: int | None = Field(default=None, ge=1, le=16, description="GPUs for the running action.")
    num_nodes: int | None = Field(default=None, ge=1, le=64, description=(
        "train only: nodes for the job (num_gpus is then per node, at least 2); needs a multi-node backend."))
    encryption_key: str | None = Field(default=None, min_length=8, max_length=512, description=(
        "Model key (at least 8 characters), written to the spec file only; never shown back."))
    output_path: str | None = Field(default=None, max_length=4096, description=(
        "Absolute host path for the spec (.yaml). Default: a new folder under the state dir."))
    backend: str = Field(default="docker", max_length=64, description=(
        "Where the job will run: docker, slurm, kubernetes (container paths /data, /results/...) or local (host "
        "paths unchanged)."))
    strict: bool = Field(default=False, description="Error on 7.x-only keys instead of removing them.")


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
    overrides: list[dict[str, Any]] = Field(default_factory=list, description=(
        "The user's overrides as they landed in the spec (path, value written; shorthands expanded)."))
    lineage: str | None = Field(default=None, description=(
        "train: what the job starts from (resume: checkpoint and epoch; fine-tune: weights, fresh optimizer)."))


def _convert_results_note(req: BuildSpecInput, data_root: Path, draft: Draft) -> None:
    if req.action == "dataset_convert" and req.results_dir and Path(req.results_dir) != data_root:
        draft.warnings.append("dataset_convert writes into data_root (5.5 reads the pickles back from "
                              "root_dir); results_dir was ignored")


def _apply_user_layers(req: BuildSpecInput, spec: dict[str, Any], draft: Draft, inputs: HostInputs) -> None:
    node = ConvertConfig if req.action == "dataset_convert" else ExperimentConfig
    layers: list[tuple[str, dict[str, Any]]] = []
    if req.base_spec:
        from tao_bevfusion.core.yamlio import load_yaml_file

        base = load_yaml_file(inputs.base_spec) if inputs.base_spec else None
        if not isinstance(base, dict):
            draft.problems.append(problem("base_spec", "the file is not a YAML mapping", "pass a TAO spec file"))
            return
        for key in [k for k in MANAGED if get_path(base, k) is not None]:
            drop_path(base, key)  # paths in a foreign spec are replaced by this job's own
        model = base.get("model")
        if isinstance(model, dict) and all(model.get(k) == v for k, v in STALE_GEOMETRY.items()):
            for key in STALE_GEOMETRY:
                model.pop(key)
            draft.changes.append(Change(path="model.point_cloud_range", value=GEOMETRY["point_cloud_range"],
                                      reason="base_spec had the 5.5 dataclass geometry, which does not match "
                                      "grid_size 1440; replaced with the 5.5 sample geometry (with voxel_size)"))
        layers.append(("base_spec", base))
    if resume.is_resume(req) and not req.base_spec:
        resume.apply_parent(req, inputs.parent, spec, draft, MANAGED)
    if req.overrides:
        nested, probs = specrules.nest_overrides(req.overrides)
        draft.problems += probs
        for path in sorted(specrules.flat_paths(nested)):
            if path in MANAGED:
                draft.problems.append(problem(f"overrides.{path}", "this key is set by build_spec from its arguments",
                                            f"use the `{MANAGED[path]}` argument instead", code="MANAGED_KEY"))
                drop_path(nested, path)
        layers.append(("overrides", nested))
    for origin, layer in layers:
        errors, removed = specrules.strip_newer_keys(layer, req.strict)
        draft.problems += [p.model_copy(update={"path": f"{origin}.{p.path}"}) for p in errors]
        for path in removed:
            draft.changes.append(Change(path=path, value=None, reason="newer than 5.5; removed"))
        draft.problems += specrules.unknown_keys(layer, node)
        if not errors:
            specrules.deep_merge(spec, layer)


def _validate(action: str, spec: dict[str, Any], draft: Draft) -> None:
    node = ConvertConfig if action == "dataset_convert" else ExperimentConfig
    try:
        node.model_validate(spec)
    except ValidationError as exc:
        known = {p.path for p in draft.problems}
        draft.problems += [p for p in specrules.pydantic_problems(exc) if p.path not in known]
    for running in ("evaluate", "inference"):
        if get_path(spec, f"{running}.checkpoint") == MISSING and not any(
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
    masked_spec: dict[str, Any] = mask_keys(spec)
    return masked_spec


def _write_atomic(path: Path, text: str, mode: int = 0o600, exclusive: bool = False) -> None:
    """Write via a private temp file and rename (exclusive: an existing file is never replaced)."""
    try:
        names.private_dirs(path.parent)
        atomic_write(path, text, mode, exclusive=exclusive)
    except FileExistsError as exc:
        raise output_exists(path) from exc
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO):  # the disk's trouble: the same call works later
            raise EngineError(problem(str(path), f"cannot write the spec: {exc.strerror}",
                                      "free disk space, then repeat the call; nothing was written",
                                      code="DISK_FULL")) from exc
        raise InputError(problem(str(path), f"cannot write the spec: {exc.strerror}",
                                 "choose a writable output_path; nothing was written")) from exc


def _private_state(settings: Settings) -> None:
    try:
        names.secure_state_dir(settings.home)
    except OSError as exc:
        raise EngineError(problem(str(settings.home), f"cannot create the state dir: {exc.strerror}",
                                  "set TAO_BEVFUSION_HOME to a writable folder (nothing was written)",
                                  code="STATE_DIR_UNWRITABLE")) from exc


def build_spec(req: BuildSpecInput, ctx: HasSettings | None = None,
               parent: ParentRun | None = None) -> BuildSpecResult:
    """Build, validate and write a 5.5 spec. Raises InputError listing every problem (nothing written)."""
    settings = settings_of(ctx)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)
    maps_paths = backend_class(req.backend).capabilities.maps_paths_into_container
    _private_state(settings)
    bounded = override_problems(req.overrides)  # before any rule walks them
    if bounded:
        raise InputError(bounded, headline=f"cannot build a valid 5.5 {req.action} spec")
    draft = Draft()
    inputs = resolve_inputs(req, settings, stamp, parent)  # every host path checked here, once
    data_root, results, spec_path = inputs.data_root, inputs.results, inputs.spec_path
    _convert_results_note(req, data_root, draft)
    layout = MountLayout(maps_paths)
    spec = recommended_spec(req.action)
    result: dict[str, Any] = {}
    _apply_user_layers(req, spec, draft, inputs)
    if req.action == "dataset_convert":
        convert_rules(spec, layout, data_root, draft)
    else:
        experiment_rules(req, spec, layout, inputs, draft, result)
    layout.add(spec_path.parent, names.SPECS_MOUNT, "ro")
    _validate(req.action, spec, draft)
    draft.problems += resume.epoch_problems(req, spec, result.get("checkpoint_choice"))
    if draft.problems:
        raise InputError(draft.problems, headline=f"cannot build a valid 5.5 {req.action} spec")
    text = dump_yaml(spec)
    _write_atomic(spec_path, text, exclusive=bool(req.output_path))
    landed = resume.landed_overrides(req.overrides, spec)
    story = resume.lineage(req, spec, result.get("checkpoint_choice"))
    sidecar = LaunchSidecar(action=req.action, backend=req.backend, data_root=str(data_root),
                            results_dir=str(results), mounts=layout.mounts,
                            spec_sha256=hashlib.sha256(text.encode()).hexdigest(),
                            spec_container_path=layout.to_container(spec_path),
                            checkpoint_choice=result.get("checkpoint_choice"),
                            num_epochs=get_path(spec, "train.num_epochs"), parent_job_id=req.parent_job_id,
                            overrides=landed or None, lineage=story, warnings=draft.warnings or None)
    _write_atomic(names.launch_sidecar(spec_path), sign(sidecar, settings.home).model_dump_json(indent=2),
                  exclusive=bool(req.output_path))
    return BuildSpecResult(action=req.action, spec_path=str(spec_path), spec=compact(masked(spec), req.action),
                           mounts=layout.mounts,
                           results_dir=str(results), data_root=str(data_root), changes=draft.changes,
                           warnings=draft.warnings, checkpoint_choice=result.get("checkpoint_choice"),
                           overrides=landed, lineage=story)
