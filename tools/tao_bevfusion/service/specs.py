"""build_spec and resolve_parent_checkpoint as tools: the parent job is looked up here, once.

The spec builder (specbuild/) never reads the job store; it gets the parent as a ParentRun.
"""

from pathlib import Path
from typing import Any

from tao_bevfusion.core.errors import InputError, problem
from tao_bevfusion.core.yamlio import load_recorded
from tao_bevfusion.jobs import checkpoints
from tao_bevfusion.jobs.checkpoints import CheckpointChoice, Choice
from tao_bevfusion.jobs.context import AppContext, app_context
from tao_bevfusion.jobs.store import Job, check_job_id
from tao_bevfusion.service.kinds import kind_of
from tao_bevfusion.specbuild import build
from tao_bevfusion.specbuild.build import BuildSpecInput, BuildSpecResult
from tao_bevfusion.specbuild.parent import ParentRun
from tao_bevfusion.specbuild.resume import is_resume


def resolve_parent_checkpoint(
    parent_job_id: str | None = None,
    results_dir: str | None = None,
    choose: Choice | None = None,
    epoch: int | None = None,
    metric: str = "AP11",
    ctx: AppContext | None = None,
) -> CheckpointChoice:
    """The checkpoint a follow-up takes from a job (of any kind) or from a train results folder."""
    ctx = ctx or app_context()
    if parent_job_id:
        job = ctx.store.get(check_job_id(parent_job_id, "parent_job_id"))
        return kind_of(job).checkpoint(job, choose, epoch, metric, ctx)
    return checkpoints.resolve_parent_checkpoint(
        results_dir=results_dir, choose=choose, epoch=epoch, metric=metric, ctx=ctx
    )


def _launched_spec(job: Job) -> dict[str, Any]:
    try:
        loaded = load_recorded(
            Path(job.spec_path), job.spec_sha256
        )  # the spec launched, by its hash
    except InputError as exc:
        raise InputError(
            problem(
                "parent_job_id",
                f"the parent's spec {job.spec_path} cannot be read: {exc.problems[0].message}",
                "fine-tune instead (resume=false)",
            )
        ) from exc
    if not isinstance(loaded, dict):
        raise InputError(
            problem(
                "parent_job_id",
                f"the parent's spec {job.spec_path} is not a mapping",
                "fine-tune instead (resume=false)",
            )
        )
    return loaded


def resolve_parent(req: BuildSpecInput, ctx: AppContext) -> ParentRun | None:
    """parent_job_id, looked up once: the job, the checkpoint this build takes, and (resume) its spec."""
    if not req.parent_job_id:
        return None
    job = ctx.store.get(check_job_id(req.parent_job_id, "parent_job_id"))
    resuming = is_resume(req) and not req.base_spec
    if resuming and job.action != "train":
        raise InputError(
            problem(
                "parent_job_id",
                f"{job.id} is a {job.action} job; only a train job can be resumed",
                "pass a train job id (list_jobs(action='train'))",
            )
        )
    spec = _launched_spec(job) if resuming else None
    if (
        req.checkpoint or req.action == "dataset_convert"
    ):  # an explicit checkpoint wins; convert loads none
        return ParentRun(job_id=job.id, action=job.action, spec=spec)
    choose = req.choose
    if choose is None and req.epoch is None and req.action == "train" and req.resume:
        choose = (
            "latest"  # resuming continues the newest checkpoint: the request itself asks for latest
        )
    choice = kind_of(job).checkpoint(job, choose, req.epoch, "AP11", ctx)
    return ParentRun(job_id=job.id, action=job.action, spec=spec, checkpoint=choice.model_dump())


def build_spec(req: BuildSpecInput, ctx: AppContext | None = None) -> BuildSpecResult:
    """The build_spec tool: build, validate and write a 5.5 spec (see specbuild.build.build_spec)."""
    ctx = ctx or app_context()
    return build.build_spec(req, ctx, resolve_parent(req, ctx))
