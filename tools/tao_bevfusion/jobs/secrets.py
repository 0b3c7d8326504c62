"""The secret values a job carries (its model key), to redact from everything shown about it."""

from pathlib import Path

from tao_bevfusion.core.secretkeys import secret_values
from tao_bevfusion.core.yamlio import read_mapping
from tao_bevfusion.jobs.store import Job


def job_secrets(job: Job) -> list[str]:
    """Secret values this job's spec carried at launch (the encryption key), to redact from anything shown.

    They are recorded with the job (a later edit of the spec file must not un-redact older logs); the spec is
    read only for records made before that, and only when they were launched with a key."""
    if job.meta.secrets:
        return list(job.meta.secrets)
    if not job.meta.has_secret:
        return []
    return secret_values(read_mapping(Path(job.spec_path)))
