"""Resume continues the parent run; a fine-tune says what it loaded.

A resume (train, parent_job_id, resume=true) starts from the parent's own spec, not from defaults:
epochs, batch size, optimizer, schedule, data and model all come from the file the parent launched with.
Overrides given with the resume are applied on top and listed; one that changes the model (its geometry
or architecture, i.e. the shapes in the checkpoint) is refused, because mmengine would fail to load the
optimizer and weights, or worse, load them into a different network. The checkpoint is the last complete
one (the file mmengine's last_checkpoint names; it is written only after the .pth is saved), and the new
job writes into its own results folder so the parent's status.json, logs and checkpoints stay as they were.
"""

import copy
from typing import TYPE_CHECKING, Any

from tao_bevfusion.core.dotted import drop_path, get_path
from tao_bevfusion.core.errors import InputError, Problem, problem
from tao_bevfusion.specbuild import rules as specrules
from tao_bevfusion.specbuild.parent import ParentRun
from tao_bevfusion.specbuild.wiring import Change, Draft

if TYPE_CHECKING:
    from tao_bevfusion.specbuild.build import BuildSpecInput

# Keys a resume must keep: they fix the shapes of the saved tensors (or which classes the head predicts).
FROZEN_PREFIXES = ("model.", "dataset.classes", "input_modality.")


def leaf_paths(overrides: dict[str, Any]) -> list[str]:
    nested, _ = specrules.nest_overrides(overrides)
    return sorted(
        p for p in specrules.flat_paths(nested) if not isinstance(get_path(nested, p), dict)
    )


def is_resume(req: "BuildSpecInput") -> bool:
    return req.action == "train" and req.resume and bool(req.parent_job_id)


def parent_spec(parent: ParentRun | None, managed: dict[str, str]) -> dict[str, Any]:
    """The parent train job's spec, minus the keys build_spec sets from its arguments (paths, weights)."""
    if parent is None or parent.spec is None:
        raise InputError(
            problem(
                "parent_job_id",
                "the parent job was not resolved before the build",
                "call build_spec through the tool (it looks the parent up once)",
            )
        )
    if parent.action != "train":
        raise InputError(
            problem(
                "parent_job_id",
                f"{parent.job_id} is a {parent.action} job; only a train job can be resumed",
                "pass a train job id (list_jobs(action='train'))",
            )
        )
    base = copy.deepcopy(parent.spec)
    for key in [k for k in managed if get_path(base, k) is not None]:
        drop_path(base, key)
    base.pop("encryption_key", None)  # given again by the caller if the model is encrypted
    return base


def frozen_override_problems(
    overrides: dict[str, Any] | None, base: dict[str, Any]
) -> list[Problem]:
    """Overrides that would change what the checkpoint's tensors mean; refused for a resume."""
    if not overrides:
        return []
    nested, _ = specrules.nest_overrides(overrides)
    out = []
    for path in leaf_paths(overrides):
        if not path.startswith(FROZEN_PREFIXES):
            continue
        if get_path(nested, path) != get_path(base, path):
            out.append(
                problem(
                    f"overrides.{path}",
                    "a resume continues the parent's network; changing the model "
                    "(geometry, architecture or classes) would not load its checkpoint",
                    "drop this override to resume, or fine-tune with resume=false (weights only)",
                    value=get_path(nested, path),
                    code="RESUME_CHANGES_MODEL",
                )
            )
    return out


def apply_parent(
    req: "BuildSpecInput",
    parent: ParentRun | None,
    spec: dict[str, Any],
    draft: Draft,
    managed: dict[str, str],
) -> None:
    """Merge the parent's spec into the recommended one (before the user's overrides)."""
    base = parent_spec(parent, managed)
    draft.problems += frozen_override_problems(req.overrides, base)
    specrules.deep_merge(spec, base)
    draft.changes.append(
        Change(
            path="<spec>",
            value=None,
            reason=f"resume: the parent {req.parent_job_id}'s spec "
            "is the base (epochs, batch size, optimizer, schedule, data, model)",
        )
    )


def epoch_problems(
    req: "BuildSpecInput", spec: dict[str, Any], choice: dict[str, Any] | None
) -> list[Problem]:
    """A resume must ask for more epochs than its checkpoint has: else 5.5 starts, trains nothing and ends
    without the artifacts it promised. Refused before launch, naming both numbers."""
    if not (
        req.action == "train" and req.resume and choice and isinstance(choice.get("epoch"), int)
    ):
        return []
    total, done = get_path(spec, "train.num_epochs"), choice["epoch"]
    if not isinstance(total, int) or total > done:
        return []
    return [
        problem(
            "overrides.num_epochs",
            f"num_epochs {total} is not above the checkpoint's epoch {done}: a "
            "resume would train nothing",
            f"pass overrides={{'num_epochs': {done + 1}}} or more (epoch "
            f"{done} + the epochs you want), or evaluate epoch {done} instead",
            value=total,
            code="RESUME_NO_EPOCHS_LEFT",
        )
    ]


def landed_overrides(
    overrides: dict[str, Any] | None, spec: dict[str, Any]
) -> list[dict[str, Any]]:
    """Each key the user overrode, with the value it has in the written spec (shorthands expanded)."""
    if not overrides:
        return []
    return [{"path": p, "value": get_path(spec, p)} for p in leaf_paths(overrides)][:40]


def lineage(
    req: "BuildSpecInput", spec: dict[str, Any], choice: dict[str, Any] | None
) -> str | None:
    """One sentence: what this train job starts from."""
    if req.action != "train":
        return None
    loaded = get_path(spec, "train.resume_training_checkpoint_path")
    # The host file the weights come from; a pretrained_checkpoint or a bare container path still names it.
    where = (
        (choice.get("path") if choice else None)
        or req.checkpoint
        or req.pretrained_checkpoint
        or loaded
    )
    if not loaded:
        return None
    if get_path(spec, "train.resume"):
        epoch = (
            f" (epoch {choice['epoch']}, the last complete checkpoint: {choice.get('method')})"
            if choice
            else ""
        )
        total = get_path(spec, "train.num_epochs")
        return (
            f"resume: continues from {where}{epoch} with its optimizer, LR schedule and epoch counter, up to "
            f"epoch {total}; the parent's results folder is left as it was"
        )
    return (
        f"fine-tune: weights loaded from {where}; the optimizer, LR schedule and epoch counter start fresh "
        f"(epoch 1 of {get_path(spec, 'train.num_epochs')})"
    )
