"""Typed evidence passed between the readers, the verdict and the summaries (and stored with each job).

Every numeric field tolerates what a foreign writer may put there: a value of the wrong type becomes None
instead of breaking every later read of the job.
"""

import math
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from tao_bevfusion.evidence.divergence import LossWatch


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _whole(value: Any) -> int | None:
    number = _number(value)
    if number is None or math.isnan(number) or math.isinf(number) or abs(number) > 2**53:
        return None
    return int(number)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value[:2000] if isinstance(value, str) else str(value)[:2000]


Number = Annotated[float | None, BeforeValidator(_number)]
Whole = Annotated[int | None, BeforeValidator(_whole)]
Text = Annotated[str | None, BeforeValidator(_text)]


class Tolerant(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Cursor(Tolerant):
    """How far each reader got, in bytes; the next look reads only what was appended."""

    status_offset: int = 0
    log_offset: int = 0
    output_at: float | None = Field(
        default=None,
        description="When the job last wrote a log line or status record (for stall detection).",
    )


class StatusEvidence(Tolerant):
    records: int = 0
    failures: list[str] = Field(default_factory=list)
    started: bool = False
    finished: str | None = None
    interrupted: bool = False
    unparsed: int = Field(default=0, description="Lines that were not a JSON object (skipped).")
    resets: int = Field(
        default=0, description="Times the file shrank (rotated or truncated) and was re-read."
    )
    overlong: int = Field(default=0, description="Records over 1 MB (skipped unread).")


class PatternHit(Tolerant):
    count: int = 0
    evidence: str = ""


class Findings(Tolerant):
    """Everything the log and status.json said that the verdict and the summary use."""

    footer: str | None = None
    sigsegv: bool = False
    sigkill: bool = False
    traceback: bool = False
    last_error_line: str | None = None
    matches: dict[str, PatternHit] = Field(default_factory=dict)
    log_metrics: dict[str, float] = Field(default_factory=dict)
    skipped_bytes: int = 0
    status: StatusEvidence = Field(default_factory=StatusEvidence)
    loss_watch: LossWatch = Field(default_factory=LossWatch)


class RunProgress(Tolerant):
    epoch: Whole = None
    epoch_iteration: Whole = None
    iters_per_epoch: Whole = None
    cur_iter: Whole = None
    loss: Number = None
    lr: Number = None
    eta: Text = None
    time_per_iter: Number = None


class EpochAP(Tolerant):
    epoch: Whole = None
    AP11: Number = None
    AP40: Number = None


class RunMetrics(Tolerant):
    AP11: Number = None
    AP40: Number = None
    epoch: Whole = None
    best_AP11: Number = None
    best_epoch: Whole = None
    history: list[EpochAP] = Field(default_factory=list)


class Evidence(BaseModel):
    """All the verdict is decided from."""

    exit_code: int | None = None
    oom_killed: bool = False
    cancel_requested: bool = False
    container_missing: bool = False
    findings: Findings = Field(default_factory=Findings)
    present: list[str] = Field(default_factory=list, description="Artifacts found.")
    missing: list[str] = Field(
        default_factory=list, description="Artifacts the action should have left."
    )
