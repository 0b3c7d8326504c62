"""build_spec's host inputs, resolved once at its boundary: every path checked against the allowed roots and
the state dir, the parent job already looked up. The rules that follow are functions of these values."""

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tao_bevfusion.core import layout as names
from tao_bevfusion.core.actions import ACTION_SPECS
from tao_bevfusion.core.errors import InputError, problem
from tao_bevfusion.core.paths import host_path, refuse_in_state_dir, refuse_results_overlap
from tao_bevfusion.core.settings import Settings
from tao_bevfusion.specbuild.parent import ParentRun

if TYPE_CHECKING:
    from tao_bevfusion.specbuild.build import BuildSpecInput


@dataclass(frozen=True)
class HostInputs:
    data_root: Path
    results: Path  # convert: the data root (5.5 writes its outputs there)
    spec_path: Path
    base_spec: Path | None
    checkpoint: Path | None
    pretrained: Path | None
    swin: Path | None
    parent: ParentRun | None


def checkpoint_file(raw: str, field: str, settings: Settings) -> Path:
    path = host_path(raw, field, settings, kind="file")
    refuse_in_state_dir(
        path.parent, field, settings, allowed=names.RUNS_DIR
    )  # its folder is mounted into the job
    if path.suffix != ".pth":
        raise InputError(
            problem(
                field,
                f"{path.name} is not a .pth checkpoint (5.5 loads PyTorch .pth only)",
                "pass an epoch_<N>.pth file",
                value=raw,
            )
        )
    return path


def output_exists(path: Path) -> InputError:
    return InputError(
        problem(
            "output_path",
            f"{path} already exists (it may be another job's recorded spec); "
            "build_spec never overwrites a file",
            "give a new file name, or leave output_path out (a fresh folder under the state dir)",
            code="OUTPUT_EXISTS",
        )
    )


def _spec_location(req: "BuildSpecInput", settings: Settings, stamp: str) -> Path:
    if not req.output_path:
        return settings.home / names.SPECS_DIR / stamp / f"{req.action}.yaml"
    out = host_path(req.output_path, "output_path", settings, kind="file", must_exist=False)
    if out.suffix != ".yaml":
        raise InputError(
            problem(
                "output_path",
                "the 5.5 launcher validates only '.yaml' spec files",
                f"use {out.with_suffix('.yaml')}",
                value=req.output_path,
            )
        )
    if out.exists() and out.is_dir():
        raise InputError(
            problem("output_path", "is a directory", "give a file path ending in .yaml")
        )
    if out.exists() or out.is_symlink() or names.launch_sidecar(out).exists():
        raise output_exists(out)
    refuse_in_state_dir(out.parent, "output_path", settings, allowed=names.SPECS_DIR)
    return out


def _results_location(
    req: "BuildSpecInput", settings: Settings, data_root: Path, stamp: str
) -> Path:
    if ACTION_SPECS[req.action].writes_data_root:
        return data_root
    if req.results_dir:
        results = host_path(req.results_dir, "results_dir", settings, must_exist=False)
        refuse_results_overlap(results, data_root, settings)
        return refuse_in_state_dir(results, "results_dir", settings, allowed=names.RUNS_DIR)
    return settings.home / names.RUNS_DIR / stamp


def _file(raw: str | None, field: str, settings: Settings) -> Path | None:
    return checkpoint_file(raw, field, settings) if raw else None


def resolve_inputs(
    req: "BuildSpecInput", settings: Settings, stamp: str, parent: ParentRun | None
) -> HostInputs:
    data_root = refuse_in_state_dir(
        host_path(req.data_root, "data_root", settings), "data_root", settings
    )
    base = host_path(req.base_spec, "base_spec", settings, kind="file") if req.base_spec else None
    experiment = not ACTION_SPECS[req.action].writes_data_root
    return HostInputs(
        data_root=data_root,
        results=_results_location(req, settings, data_root, stamp),
        spec_path=_spec_location(req, settings, stamp),
        base_spec=base,
        checkpoint=_file(req.checkpoint, "checkpoint", settings) if experiment else None,
        pretrained=_file(req.pretrained_checkpoint, "pretrained_checkpoint", settings)
        if experiment
        else None,
        swin=_file(req.swin_checkpoint, "swin_checkpoint", settings) if experiment else None,
        parent=parent,
    )
