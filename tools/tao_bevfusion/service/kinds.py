"""Job kinds: what get_job, cancel_job, list_jobs and a parent checkpoint mean for each kind of job.

A run is one container (jobs/); a study is an AutoML search whose detached driver launches runs (studies/).
A new kind is one class here and a line in KINDS.
"""

from typing import Protocol

from tao_bevfusion.core.errors import EngineError, problem
from tao_bevfusion.jobs import checkpoints, hooks
from tao_bevfusion.jobs.cancel import cancel_run
from tao_bevfusion.jobs.checkpoints import CheckpointChoice, Choice
from tao_bevfusion.jobs.context import AppContext
from tao_bevfusion.jobs.engine import refresh
from tao_bevfusion.jobs.store import Job
from tao_bevfusion.present.study_summary import study_summary
from tao_bevfusion.present.summary import JobSummary, summarize
from tao_bevfusion.studies.driver import ensure_driver
from tao_bevfusion.studies.status import cancel_study, study_best


class JobKind(Protocol):
    def refresh(self, job: Job, ctx: AppContext) -> Job:
        """The job as it is now (polling whatever runs it)."""

    def summary(self, job: Job, ctx: AppContext) -> JobSummary:
        """What get_job returns."""

    def cancel(self, job: Job, force: bool, ctx: AppContext) -> tuple[str, str]:
        """Stop it: (state after, message)."""

    def checkpoint(
        self, job: Job, choose: Choice | None, epoch: int | None, metric: str, ctx: AppContext
    ) -> CheckpointChoice:
        """The checkpoint a follow-up job takes from it."""


class RunKind:
    def refresh(self, job: Job, ctx: AppContext) -> Job:
        return refresh(job, ctx)

    def summary(self, job: Job, ctx: AppContext) -> JobSummary:
        return summarize(refresh(job, ctx), ctx.settings.stall_seconds)

    def cancel(self, job: Job, force: bool, ctx: AppContext) -> tuple[str, str]:
        return cancel_run(job, force, ctx)

    def checkpoint(
        self, job: Job, choose: Choice | None, epoch: int | None, metric: str, ctx: AppContext
    ) -> CheckpointChoice:
        return checkpoints.resolve_parent_checkpoint(
            parent_job_id=job.id, choose=choose, epoch=epoch, metric=metric, ctx=ctx
        )


class StudyKind:
    def refresh(self, job: Job, ctx: AppContext) -> Job:
        ensure_driver(
            job, ctx
        )  # a study has no container: its driver runs it (started when missing)
        job = ctx.store.get(job.id)
        hooks.refreshed(job, ctx)  # e.g. the study's progress to its tracker run
        return job

    def summary(self, job: Job, ctx: AppContext) -> JobSummary:
        return study_summary(job, ctx)

    def cancel(self, job: Job, force: bool, ctx: AppContext) -> tuple[str, str]:
        return cancel_study(job, force, ctx)

    def checkpoint(
        self, job: Job, choose: Choice | None, epoch: int | None, metric: str, ctx: AppContext
    ) -> CheckpointChoice:
        """Its best trial's exact best-epoch checkpoint, never latest (by AP11, the study's objective)."""
        if choose not in (None, "best") or epoch is not None:
            raise checkpoints.study_choice_error(job.id)
        trial_id, best_epoch = study_best(job)
        choice = checkpoints.resolve_parent_checkpoint(
            parent_job_id=trial_id, epoch=best_epoch, ctx=ctx
        )
        method = (
            f"the best trial ({trial_id}) of study {job.id}: its best validation AP11 at epoch "
            f"{best_epoch}, exact file (never latest)"
        )
        return choice.model_copy(update={"method": method})


KINDS: dict[str, JobKind] = {"run": RunKind(), "study": StudyKind()}


def kind_of(job: Job) -> JobKind:
    try:
        return KINDS[job.kind]
    except KeyError:
        raise EngineError(
            problem(
                "job_id",
                f"{job.id} is a job of unknown kind {job.kind!r}",
                "upgrade tao-bevfusion; this job was recorded by a newer version",
            )
        ) from None
