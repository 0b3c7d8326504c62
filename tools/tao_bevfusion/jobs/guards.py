"""Launch guards run_action applies before anything is recorded: a results folder is never reused over an
earlier job's outputs, a dataset is never converted under a job that reads it (nor read while converted),
and the GPU list matches the GPUs the spec runs on.
"""

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
    earlier = [j for j in ctx.store.query(limit=1000) if j.results_dir == results_dir and j.started_at]
    if earlier:
        job = earlier[0]
        raise InputError(problem("results_dir", f"{results_dir} already holds the outputs of job {job.id} "
                                 f"({job.action}, {job.state}); a second launch would overwrite them",
                                 "call build_spec again (each spec gets a fresh results folder) or pass a new "
                                 f"results_dir; to continue that training use parent_job_id='{job.id}' with "
                                 "resume=true", code="RESULTS_DIR_USED"))


def refuse_dataset_in_use(ctx: AppContext, action: str, data_root: str) -> None:
    """dataset_convert rewrites the pickles and velodyne_reduced/ a running job reads: never both at once."""
    from tao_bevfusion.jobs.engine import refresh

    for job in _active(ctx):
        if job.data_root != data_root or (action != "dataset_convert" and job.action != "dataset_convert"):
            continue
        if refresh(job, ctx).terminal:
            continue
        what = ("converts it" if job.action == "dataset_convert" else f"reads it ({job.action})")
        raise InputError(problem("data_root", f"job {job.id} {what}; a {action} now would "
                                 + ("rewrite the files under it" if action == "dataset_convert"
                                    else "read half-written files"),
                                 f"wait for {job.id} (get_job(job_id='{job.id}')) or cancel it, then retry",
                                 code="DATASET_IN_USE"))


def gpu_checks(gpus: list[str] | None, gpus_per_node: int) -> list[Check]:
    """An explicit GPU list must name exactly the GPUs the spec runs on (num_gpus), each once."""
    if not gpus:
        return []
    if len(set(gpus)) != len(gpus):
        return [Check(name="gpus", ok=False, message=f"gpus lists a GPU twice: {gpus}",
                      fix="name each host GPU once")]
    if gpus_per_node and len(gpus) != gpus_per_node:
        return [Check(name="gpus", ok=False, message=f"gpus names {len(gpus)} GPU(s) but the spec runs on "
                      f"num_gpus={gpus_per_node}", fix=f"pass {gpus_per_node} id(s) in gpus, or build the spec with "
                      f"num_gpus={len(gpus)}")]
    return []
