"""Launch guards run_action applies before anything is recorded: a results folder is never reused over an
earlier job's outputs, a dataset is never converted under a job that reads it (nor read while converted),
and the GPU list matches the GPUs the spec runs on.
"""

import re
from pathlib import Path

from tao_bevfusion.backends.base import Check
from tao_bevfusion.core.errors import InputError, problem
from tao_bevfusion.core.states import ACTIVE_STATES
from tao_bevfusion.jobs.context import AppContext
from tao_bevfusion.jobs.store import Job

ACTIVE = tuple(sorted(ACTIVE_STATES))


def _active(ctx: AppContext) -> list[Job]:
    return [j for state in ACTIVE for j in ctx.store.query(state=state, limit=1000)]


def refuse_reused_results(ctx: AppContext, action: str, results_dir: str) -> None:
    """Running a spec again would write into the earlier job's folder and overwrite its checkpoints while
    get_job still reports that job's outputs. Convert is exempt (its results dir is the dataset root, and
    re-converting is how a changed dataset is refreshed). A job that never started left nothing to protect."""
    if action == "dataset_convert":
        return
    earlier = [
        j for j in ctx.store.query(limit=1000) if j.results_dir == results_dir and j.started_at
    ]
    if earlier:
        job = earlier[0]
        raise InputError(
            problem(
                "results_dir",
                f"{results_dir} already holds the outputs of job {job.id} "
                f"({job.action}, {job.state}); a second launch would overwrite them",
                "call build_spec again (each spec gets a fresh results folder) or pass a new "
                f"results_dir; to continue that training use parent_job_id='{job.id}' with "
                "resume=true",
                code="RESULTS_DIR_USED",
            )
        )


STUDY_MARKERS = ("study.json", "trials.json", "best_rec.json", "study.db", "review.json")
TRIAL_FOLDER = re.compile(r"^trial_\d{3,}(_relaunch\d+)?$")


def _overlaps(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def _a_trial_of(job: Job, folder: Path) -> bool:
    """The study's own trial folders are inside it by design (only while the study runs)."""
    return (
        job.kind == "study"
        and not job.terminal
        and folder.parent == Path(job.results_dir)
        and bool(TRIAL_FOLDER.match(folder.name))
    )


def refuse_other_jobs_folders(
    ctx: AppContext, action: str, results_dir: str, data_root: str
) -> None:
    """A results folder (mounted read-write) may not lie inside, or hold, another job's or study's folder, and
    the dataset may not lie inside a job's results (that job could swap it). Convert writes into its dataset
    root by design, so its folder is the dataset rule's business, not this one's."""
    folder, root = Path(results_dir), Path(data_root)
    for job in ctx.store.query(limit=5000):
        if job.action == "dataset_convert" or job.results_dir == results_dir:
            continue  # the same folder is refuse_reused_results' business
        theirs = Path(job.results_dir)
        if (
            action != "dataset_convert"
            and _overlaps(folder, theirs)
            and not _a_trial_of(job, folder)
        ):
            raise InputError(
                problem(
                    "results_dir",
                    f"{folder} overlaps the results folder of job {job.id} "
                    f"({job.kind}, {job.state}): {theirs}; either job could rewrite the other's "
                    "files",
                    "use a fresh results_dir outside every job's folder (or leave it out)",
                    code="RESULTS_DIR_OVERLAP",
                )
            )
        if theirs in root.parents or theirs == root:
            raise InputError(
                problem(
                    "data_root",
                    f"{root} is inside the results folder of job {job.id} ({theirs})"
                    "; that job's container can replace it",
                    "copy the dataset out of the job's folder, or give its real location",
                    code="DATA_IN_JOB_FOLDER",
                )
            )


def refuse_used_study_folder(ctx: AppContext, folder: Path) -> None:
    """A study writes study.json, trials.json and trial_NNN/ into its folder: never over another's."""
    used = [j for j in ctx.store.query(limit=5000) if j.results_dir == str(folder)]
    markers = [name for name in STUDY_MARKERS if (folder / name).exists()]
    trials = folder.is_dir() and any(TRIAL_FOLDER.match(p.name) for p in folder.iterdir())
    if used or markers or trials:
        owner = (
            f"job {used[0].id} ({used[0].kind}, {used[0].state})" if used else "an earlier study"
        )
        raise InputError(
            problem(
                "results_dir",
                f"{folder} already holds the outputs of {owner}"
                + (f": {', '.join(markers)}" if markers else ""),
                "use a fresh results_dir (or leave it out: a new folder under runs/); to use the "
                "best of that study, pass parent_job_id to evaluate/inference",
                code="RESULTS_DIR_USED",
            )
        )


def refuse_dataset_in_use(ctx: AppContext, action: str, data_root: str) -> None:
    """dataset_convert rewrites the pickles and velodyne_reduced/ a running job reads: never both at once."""
    from tao_bevfusion.jobs.engine import refresh

    for job in _active(ctx):
        if job.data_root != data_root or (
            action != "dataset_convert" and job.action != "dataset_convert"
        ):
            continue
        if refresh(job, ctx).terminal:
            continue
        what = "converts it" if job.action == "dataset_convert" else f"reads it ({job.action})"
        raise InputError(
            problem(
                "data_root",
                f"job {job.id} {what}; a {action} now would "
                + (
                    "rewrite the files under it"
                    if action == "dataset_convert"
                    else "read half-written files"
                ),
                f"wait for {job.id} (get_job(job_id='{job.id}')) or cancel it, then retry",
                code="DATASET_IN_USE",
            )
        )


def gpu_checks(gpus: list[str] | None, gpus_per_node: int) -> list[Check]:
    """An explicit GPU list must name exactly the GPUs the spec runs on (num_gpus), each once."""
    if not gpus:
        return []
    if len(set(gpus)) != len(gpus):
        return [
            Check(
                name="gpus",
                ok=False,
                message=f"gpus lists a GPU twice: {gpus}",
                fix="name each host GPU once",
            )
        ]
    if gpus_per_node and len(gpus) != gpus_per_node:
        return [
            Check(
                name="gpus",
                ok=False,
                message=f"gpus names {len(gpus)} GPU(s) but the spec runs on "
                f"num_gpus={gpus_per_node}",
                fix=f"pass {gpus_per_node} id(s) in gpus, or build the spec with "
                f"num_gpus={len(gpus)}",
            )
        ]
    return []
