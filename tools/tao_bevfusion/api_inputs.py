"""The input models of the tools whose functions live in api.py (build_spec and run_action have theirs in
specbuild/ and jobs/). Field descriptions are what the model reading the tool list sees."""

from typing import Literal

from pydantic import BaseModel, Field

from tao_bevfusion.core.actions import Action
from tao_bevfusion.core.limits import TEXT_LIMIT
from tao_bevfusion.core.states import JobState
from tao_bevfusion.present import compare
from tao_bevfusion.service.jobs import JobListItem


class RouteRequestInput(BaseModel):
    request: str = Field(max_length=2000, description="The user's request, verbatim.")
    last_job_id: str | None = Field(
        default=None,
        max_length=64,
        description=(
            "Follow-ups: the job the conversation was last about ('resume it', 'evaluate epoch 2 of that run')."
        ),
    )
    in_skill: bool = Field(
        default=False, description="Follow-ups: the conversation is already in this skill."
    )
    data_root: str | None = Field(
        default=None,
        max_length=4096,
        description=(
            "The KITTI root, when known: the suggested calls then carry it (else the last job's root is used)."
        ),
    )


class PolicyInput(BaseModel):
    action: Action = Field(description="The action about to run.")
    request: str | None = Field(
        default=None, max_length=2000, description="The user's words (may turn AutoML off)."
    )
    automl_policy: str | None = Field(
        default=None, max_length=16, description="'on' or 'off'; wins over the request."
    )


class CheckDatasetInput(BaseModel):
    data_root: str = Field(max_length=4096, description="Absolute host path of the KITTI root.")
    action: Action = Field(
        description="The action to check the root for (convert needs raw data; the others "
        "need converted pickles and velodyne_reduced)."
    )


class ResolveCheckpointInput(BaseModel):
    parent_job_id: str | None = Field(
        default=None, max_length=64, description="A train job id (preferred)."
    )
    results_dir: str | None = Field(
        default=None, max_length=4096, description="Or a train results folder (host)."
    )
    choose: Literal["best", "final", "latest"] | None = Field(
        default=None,
        description=(
            "best = highest validation AP11 with a checkpoint; final = last epoch of a succeeded train; "
            "latest = newest file (only when asked). Default after a succeeded train: best if validated, "
            "else final."
        ),
    )
    epoch: int | None = Field(
        default=None, ge=1, le=100000, description="An exact epoch; wins over choose."
    )
    metric: Literal["AP11", "AP40"] = Field(default="AP11", description="Metric for 'best'.")


class JobIdInput(BaseModel):
    job_id: str = Field(max_length=64, description="A job id from run_action or list_jobs.")
    include_curve: bool = Field(
        default=False,
        description=(
            "train jobs: also return the training curve as a PNG; studies: the optimisation history, the "
            "parameters against AP11 and the best trials' curves."
        ),
    )
    include_pictures: bool = Field(
        default=False,
        description=(
            "Also return pictures: inference -> a contact sheet of up to 50 frames (BEV, predicted boxes red, "
            "ground truth magenta dashed); evaluate -> the AP chart; train -> the curve."
        ),
    )
    frames: list[str] | None = Field(
        default=None,
        max_length=4,
        description=(
            "inference: up to 4 frame ids (e.g. ['000123']): a BEV and a camera picture of each (implies pictures)."
        ),
    )


class LogsInput(BaseModel):
    job_id: str = Field(max_length=64, description="A job id.")
    tail_lines: int | None = Field(
        default=None, ge=1, le=500, description="Last N lines (default 50)."
    )
    offset: int | None = Field(
        default=None, ge=0, description="Read forward from this byte offset (next_offset)."
    )
    grep: str | None = Field(
        default=None, max_length=200, description="Only lines matching this regex."
    )
    max_bytes: int = Field(
        default=4096,
        ge=256,
        le=TEXT_LIMIT,
        description=("Cap on returned text (results stay under 8 KB)."),
    )


class ListJobsInput(BaseModel):
    state: JobState | None = Field(default=None, description="Only jobs in this state.")
    action: Action | None = Field(default=None, description="Only jobs of this action.")
    limit: int = Field(
        default=20, ge=1, le=100, description="At most this many (newest first unless sort)."
    )
    sort: Literal["time", "best_AP11", "duration"] = Field(
        default="time",
        description=(
            "time = newest first; best_AP11 = best validation AP11 first (over all recorded jobs); duration."
        ),
    )
    compare: list[str] | None = Field(
        default=None,
        max_length=8,
        description=(
            "2-8 train job ids: a table of their settings and metrics plus one picture with their curves overlaid."
        ),
    )


class CancelInput(BaseModel):
    job_id: str = Field(max_length=64, description="The job to stop.")
    force: bool = Field(default=False, description="Kill at once instead of a 5 s graceful stop.")


class JobList(BaseModel):
    jobs: list[JobListItem] = Field(
        description="Newest first (or as sorted); poll a running one with get_job."
    )
    comparison: list[compare.CompareRow] | None = Field(
        default=None,
        description=(
            "With compare=[...]: one row per train job (hyperparameters, best/final AP11, epochs, duration)."
        ),
    )
