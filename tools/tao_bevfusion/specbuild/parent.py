"""The parent job of a build, looked up once at the boundary (jobs/parents.py) and handed in as data.

build_spec never reads the job store: whoever calls it with a parent_job_id resolves the parent first (its
action, its launched spec, the checkpoint chosen for this build) and passes this record.
"""

from typing import Any

from pydantic import BaseModel, Field


class ParentRun(BaseModel):
    job_id: str = Field(description="The parent job (a train run, or a study's best trial).")
    action: str = Field(description="The parent's action.")
    spec: dict[str, Any] | None = Field(
        default=None,
        description=("The parent's launched spec, read for a resume (None when not needed)."),
    )
    checkpoint: dict[str, Any] | None = Field(
        default=None,
        description=(
            "The checkpoint chosen for this build: a CheckpointChoice as a mapping (path, epoch, method, ...)."
        ),
    )
