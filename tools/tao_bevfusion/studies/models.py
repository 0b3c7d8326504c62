"""The study as get_job reports it (plain models: the job summary imports them without Optuna)."""

from typing import Any

from pydantic import BaseModel, Field


class StudyProgress(BaseModel):
    completed: int = 0
    pruned: int = 0
    failed: int = 0
    running: int = 0
    total: int = Field(default=0, description="Trials in the budget, the baseline included.")


class TrialRow(BaseModel):
    number: int
    job_id: str | None
    state: str = Field(description="running, complete, pruned or fail.")
    params: dict[str, Any]
    value: float | None = Field(default=None, description="Best validation AP11 so far (or final).")
    epoch: int | None = Field(default=None, description="The epoch `value` came from.")
    baseline: bool = False
    reason: str | None = None


class StudyBest(BaseModel):
    trial: int
    job_id: str | None
    value: float
    epoch: int | None
    params: dict[str, Any]
    checkpoint: str = Field(description="The exact best-epoch checkpoint (never latest).")


class StudyStatus(BaseModel):
    algorithm: str
    progress: StudyProgress
    trials: list[TrialRow] = Field(description="Newest last; at most 40 listed (see omitted).")
    omitted: int = 0
    best: StudyBest | None = None
    elapsed_seconds: float | None = None
    estimate_left_seconds: float | None = Field(
        default=None, description="Rough: mean trial time x waves left."
    )
    driver: dict[str, Any] = Field(description="pid and alive of the study's detached driver.")
    best_rec: str | None = Field(default=None, description="best_rec.json once the study finished.")
    stopped: str | None = Field(
        default=None, description="Why the study stopped early (failures), with the fix."
    )
