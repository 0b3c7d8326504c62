"""The words for where a job is (JobState) and how it ended (Outcome), each in one place, each knowing
which of its values are final."""

from enum import StrEnum


class JobState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    UNKNOWN = "unknown"

    @property
    def is_terminal(self) -> bool:
        """A terminal state never changes again (the store refuses the write)."""
        return self not in ACTIVE_STATES


ACTIVE_STATES = frozenset({JobState.PENDING, JobState.RUNNING})
TERMINAL_STATES = frozenset(JobState) - ACTIVE_STATES


class Outcome(StrEnum):
    """A verdict's outcome: finer than the job state it maps to."""

    SUCCEEDED = "succeeded"
    SUCCEEDED_WITH_TEARDOWN_CRASH = (
        "succeeded_with_teardown_crash"  # 5.5 can segfault after a good run
    )
    FAILED = "failed"
    KILLED = "killed"
    CANCELED = "canceled"
    PRUNED = "pruned"  # stopped by its AutoML study
    LOST = "lost"  # the container vanished without an end record
    DIVERGED = "diverged"  # the loss turned NaN/inf or exploded (jobs/safety.py)
    LIMIT_REACHED = "limit_reached"  # stopped at its max_hours / max_gpu_hours, checkpoints kept

    @property
    def job_state(self) -> JobState:
        return _JOB_STATE[self]

    @property
    def succeeded(self) -> bool:
        return self.job_state is JobState.SUCCEEDED


SUCCEEDED_OUTCOMES = frozenset({Outcome.SUCCEEDED, Outcome.SUCCEEDED_WITH_TEARDOWN_CRASH})

_JOB_STATE = {
    Outcome.SUCCEEDED: JobState.SUCCEEDED,
    Outcome.SUCCEEDED_WITH_TEARDOWN_CRASH: JobState.SUCCEEDED,
    Outcome.FAILED: JobState.FAILED,
    Outcome.KILLED: JobState.FAILED,
    Outcome.CANCELED: JobState.CANCELED,
    Outcome.PRUNED: JobState.CANCELED,
    Outcome.LOST: JobState.UNKNOWN,
    Outcome.DIVERGED: JobState.FAILED,
    Outcome.LIMIT_REACHED: JobState.CANCELED,
}
