"""resolve_parent_checkpoint: the .pth an evaluate, inference or resume uses, chosen and explained.

Rules (docs/container-contract.md §10.1): epochs come from the file name only (^epoch_(\\d+)\\.pth$, 1-based,
unpadded or padded); directories never contribute numbers; only .pth files count; last_checkpoint is a pointer (a
container path), mapped to the host by basename; `best` = highest validation AP11 whose checkpoint exists;
`latest` only when asked for; `final` = the last epoch of a succeeded train job.
"""

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from tao_bevfusion.core import layout
from tao_bevfusion.core.errors import InputError, problem
from tao_bevfusion.core.paths import host_path, inside
from tao_bevfusion.evidence.status import read_status
from tao_bevfusion.jobs.context import AppContext, app_context
from tao_bevfusion.jobs.store import check_job_id

Choice = Literal["best", "final", "latest"]


class Candidate(BaseModel):
    epoch: int
    path: str
    AP11: float | None = None
    AP40: float | None = None


class CheckpointChoice(BaseModel):
    path: str = Field(description="Host path of the chosen .pth.")
    container_path: str | None = Field(description="The same file as the parent's container saw it (if known).")
    epoch: int = Field(description="The chosen epoch (from the file name).")
    method: str = Field(description="How it was chosen.")
    candidates: list[Candidate] = Field(description="Every checkpoint found, with its validation AP if logged.")
    parent_job_id: str | None = Field(default=None, description="The train job it came from.")
    results_dir: str = Field(description="The train job's host results folder.")


def study_choice_error(study_id: str) -> InputError:
    return InputError(problem("parent_job_id", f"{study_id} is an AutoML study: its checkpoint is the best trial's "
                              "best epoch (choose/epoch/resume apply to one train job)",
                              "drop choose/epoch/resume, or pass parent_job_id=<a trial's job id> (get_job on the "
                              "study lists them)"))


def _scan(train_dir: Path) -> dict[int, Path]:
    return {e: p for e, p in layout.epoch_checkpoints(train_dir).items() if inside(p, train_dir.parent)}


def _val_records(train_dir: Path) -> tuple[dict[int, dict[str, float]], bool]:
    """Per-epoch AP from status.json val lines, and whether the train finished line is there."""
    aps: dict[int, dict[str, float]] = {}
    chunk = read_status(train_dir / layout.STATUS_FILE, to_end=True)  # the choice needs every epoch's record
    finished = False
    for rec in chunk.records:
        if rec.is_validation and rec.epoch is not None and rec.AP11 is not None:
            aps[rec.epoch] = {"AP11": rec.AP11, "AP40": rec.AP40 if rec.AP40 is not None else float("nan")}
        elif rec.message and "Train finished successfully" in rec.message:
            finished = True
    return aps, finished


def _contents(folder: Path, limit: int = 8) -> str:
    """What a folder without checkpoints does hold (the user asked to resume from it)."""
    try:
        names = sorted(p.name for p in folder.iterdir())
    except OSError:
        return "nothing: the folder does not exist"
    if not names:
        return "nothing"
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _listing(found: dict[int, Path]) -> str:
    return ", ".join(f"epoch_{e}.pth" for e in found) or "none"


def resolve_parent_checkpoint(parent_job_id: str | None = None, results_dir: str | None = None,
                              choose: Choice | None = None, epoch: int | None = None, metric: str = "AP11",
                              ctx: AppContext | None = None) -> CheckpointChoice:
    ctx = ctx or app_context()
    container_root: str | None = None
    num_epochs: int | None = None
    state: str | None = None
    if parent_job_id:
        job = ctx.store.get(check_job_id(parent_job_id, "parent_job_id"))
        if job.kind != "run":
            raise InputError(problem("parent_job_id", f"{job.id} is a {job.kind}, not one train run",
                                     "resolve it through the resolve_parent_checkpoint tool"))
        if job.action != "train":
            raise InputError(problem("parent_job_id", f"{job.id} is a {job.action} job, not train",
                                         "pass the train job whose checkpoints you want (list_jobs(action='train'))"))
        root, state, num_epochs = Path(job.results_dir), job.state, job.meta.num_epochs
        mounts = job.plan.get("mounts", [])
        container_root = next((m["container"] for m in mounts if m["host"] == job.results_dir), None)
    elif results_dir:
        root = host_path(results_dir, "results_dir", ctx.settings)
    else:
        raise InputError(problem("parent_job_id", "give parent_job_id (preferred) or results_dir",
                                     "list_jobs(action='train') shows the train jobs"))
    train_dir = layout.train_dir(root) if layout.train_dir(root).is_dir() else root
    found = _scan(train_dir)
    aps, finished = _val_records(train_dir)
    if state is None:
        state = "succeeded" if finished else "unknown"
    candidates = [Candidate(epoch=e, path=str(p), **aps.get(e, {})) for e, p in found.items()]
    if not found:
        raise InputError(problem("parent_job_id" if parent_job_id else "results_dir",
                                     f"no epoch_<N>.pth checkpoints in {train_dir} (it holds: "
                                     f"{_contents(train_dir)})",
                                     "pick a train job that wrote a checkpoint (get_job shows artifacts)"))
    pointer = train_dir / layout.LAST_CHECKPOINT
    if pointer.is_file() and container_root is None:
        text = pointer.read_text().strip()
        if "/train/" in text:
            container_root = text.rsplit("/train/", 1)[0]
    chosen, method = _choose(found, aps, pointer, choose, epoch, state, num_epochs, metric)
    container = f"{container_root}/train/{chosen[1].name}" if container_root and train_dir.name == "train" else None
    return CheckpointChoice(path=str(chosen[1]), container_path=container, epoch=chosen[0], method=method,
                            candidates=candidates[-30:], parent_job_id=parent_job_id, results_dir=str(root))


def _choose(found: dict[int, Path], aps: dict[int, dict[str, float]], pointer: Path, choose: Choice | None,
            epoch: int | None, state: str, num_epochs: int | None, metric: str) -> tuple[tuple[int, Path], str]:
    if epoch is not None:
        if epoch not in found:
            raise InputError(problem("epoch", f"epoch_{epoch}.pth does not exist (have {_listing(found)})",
                                         "pass one of the existing epochs; a neighbouring epoch is never substituted",
                                         code="EPOCH_MISSING"))
        return (epoch, found[epoch]), f"exact epoch {epoch} as requested"
    if choose is None:
        if state != "succeeded":
            raise InputError(problem("choose", f"the parent train job is {state}: a checkpoint must be chosen "
                                         f"explicitly (have {_listing(found)})",
                                         "pass epoch=<N>, or choose='latest' for the newest file"))
        choose = "best" if aps else "final"
        how = "default after a succeeded train: "
    else:
        how = ""
    if choose == "latest":
        top = max(found)
        if pointer.is_file():
            name = Path(pointer.read_text().strip()).name
            e = layout.epoch_number(name)
            if e is not None and e in found:
                note = "" if e == top else f" (note: epoch_{top}.pth is higher)"
                return (e, found[e]), f"{how}latest, as requested: last_checkpoint names {name}{note}"
        return (top, found[top]), f"{how}latest, as requested: highest epoch file (no usable last_checkpoint)"
    if choose == "final":
        if state != "succeeded":
            raise InputError(problem("choose", f"'final' needs a succeeded train job (this one is {state})",
                                         f"pass epoch=<N> (have {_listing(found)}) or choose='latest'"))
        target = num_epochs or max(found)
        if target not in found:
            raise InputError(problem("choose", f"the final epoch_{target}.pth is missing (have {_listing(found)})",
                                         "pass an exact epoch"))
        return (target, found[target]), f"{how}final: the last epoch ({target}) of the succeeded train job"
    scored = [(v[metric], e) for e, v in aps.items() if v.get(metric) == v.get(metric)]
    if not scored:
        raise InputError(problem("choose", "no validation AP in the parent's status.json, so 'best' is unknown",
                                     f"choose='final' or an exact epoch (have {_listing(found)})"))
    best_value, best_epoch = max(scored)  # ties go to the higher epoch
    if best_epoch not in found:
        raise InputError(problem("choose", f"best {metric} {best_value} is at epoch {best_epoch}, but "
                                     f"epoch_{best_epoch}.pth was not written (checkpoint_interval); have "
                                     f"{_listing(found)}", "pass an exact epoch from the list", code="BEST_MISSING"))
    return (best_epoch, found[best_epoch]), f"{how}best {metric} = {best_value} at epoch {best_epoch} (val)"
