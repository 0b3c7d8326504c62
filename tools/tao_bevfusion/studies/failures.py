"""Why a run of consecutive trials failed: one common cause and its fix, or "no common cause".

Input is plain data: (params, outcome, reason) per failed trial, in order, plus optionally the params of
trials that did not fail (they sharpen a threshold: "every trial with batch_size >= 4" holds only if no
trial with batch_size >= 4 succeeded).
"""

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

DEFAULT_LIMIT = 3
CAUSES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    (
        "oom",
        re.compile(r"out of memory|OutOfMemoryError|OOMKilled|oom[- ]?kill", re.I),
        "ran out of GPU memory",
    ),
    ("nan", re.compile(r"\bnan\b|\binf\b|diverg", re.I), "diverged (NaN/inf loss)"),
    (
        "data",
        re.compile(r"No such file|FileNotFoundError|ann_file|KeyError: 'CAM", re.I),
        "could not read the dataset",
    ),
    (
        "spec",
        re.compile(r"ConfigKeyError|ValidationError|not in '|MissingMandatoryValue", re.I),
        "had a spec the container rejects",
    ),
    ("lost", re.compile(r"vanished|lost|no such container", re.I), "lost its container"),
)
# The parameter that, when high, is the usual culprit of a cause.
CULPRITS = {"oom": ("batch_size", "num_workers"), "nan": ("lr",)}
FIXES = {
    "oom": "lower batch_size (custom_param_ranges) or set train.optimizer.wrapper_type: AmpOptimWrapper, or "
    "use GPUs with more memory",
    "nan": "lower the learning rate's upper bound in custom_param_ranges",
    "data": "the same data error hits every trial: fix the dataset (check_dataset) before running a study",
    "spec": "the same spec error hits every trial: fix the overrides (build_spec shows the problem)",
    "lost": "containers vanished (engine restart, host reboot, external docker rm): check the Docker engine",
    "other": "read the failed trials' logs (get_job_logs on their job ids)",
}


class FailedTrial(BaseModel):
    params: dict[str, Any]
    outcome: str = Field(description="The job's outcome: failed, killed, lost, ...")
    reason: str = Field(
        description="The error text the verdict found (OOM line, traceback tail, ...)."
    )


class FailureDiagnosis(BaseModel):
    common: bool = Field(description="True when every failed trial shares the cause.")
    cause: str = Field(description="oom, nan, data, spec, lost, other, or mixed.")
    message: str
    fix: str
    param: str | None = Field(
        default=None, description="The parameter the failures line up with, if any."
    )
    threshold: float | None = Field(
        default=None, description="Failed at or above this value of `param`."
    )
    counts: dict[str, int] = Field(default_factory=dict)


def cause_of(outcome: str, reason: str) -> str:
    if outcome == "lost":
        return "lost"
    for code, pattern, _ in CAUSES:
        if pattern.search(reason or ""):
            return code
    return "oom" if "oom" in outcome.lower() else "other"


def consecutive_failures(outcomes: Sequence[str]) -> int:
    """Failed trials at the end of the list (in trial order); pruned and complete trials reset the run."""
    n = 0
    for outcome in reversed(outcomes):
        if outcome not in ("failed", "killed", "lost"):
            break
        n += 1
    return n


def should_stop(outcomes: Sequence[str], limit: int = DEFAULT_LIMIT) -> bool:
    return consecutive_failures(outcomes) >= limit


def _as_failed(item: Any) -> FailedTrial:
    if isinstance(item, FailedTrial):
        return item
    if isinstance(item, dict):
        return FailedTrial.model_validate(item)
    params, outcome, reason = item
    return FailedTrial(params=dict(params), outcome=str(outcome), reason=str(reason or ""))


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _threshold(
    failed: list[FailedTrial], others: list[dict[str, Any]], cause: str
) -> tuple[str, float] | None:
    """A culprit key whose every failed value is >= t while every non-failed trial stayed below t."""
    for key in sorted({k for f in failed for k in f.params}):
        if not key.endswith(CULPRITS.get(cause, ())):
            continue
        values = [float(f.params[key]) for f in failed if _number(f.params.get(key))]
        if len(values) < len(failed):
            continue
        t = min(values)
        if all(float(o[key]) < t for o in others if _number(o.get(key))):
            return key, t
    return None


def classify(failures: Sequence[Any], others: Sequence[dict[str, Any]] = ()) -> FailureDiagnosis:
    """The common cause of a run of failed trials and the fix to apply before running the study again."""
    failed = [_as_failed(f) for f in failures]
    counts = Counter(cause_of(f.outcome, f.reason) for f in failed)
    if not failed:
        return FailureDiagnosis(
            common=False, cause="none", message="no failed trials", fix="nothing to fix"
        )
    if len(counts) > 1:
        parts = ", ".join(f"{n} {c}" for c, n in counts.most_common())
        return FailureDiagnosis(
            common=False,
            cause="mixed",
            message=f"{len(failed)} failed trials with different causes ({parts})",
            fix=FIXES["other"],
            counts=dict(counts),
        )
    cause = next(iter(counts))
    what = dict((c, w) for c, _, w in CAUSES).get(cause, "failed")
    found = _threshold(failed, list(others), cause)
    if found is None:
        return FailureDiagnosis(
            common=True,
            cause=cause,
            message=f"all {len(failed)} failed trials {what}",
            fix=FIXES[cause],
            counts=dict(counts),
        )
    key, t = found
    short = key.rsplit(".", 1)[-1]
    shown = f"{t:g}"
    fix = (
        f"narrow custom_param_ranges: {{'{key}': {{'max': <below {shown}>}}}}"
        if cause == "nan"
        else f"narrow custom_param_ranges so {key} stays below {shown} (e.g. choices without {shown} and up)"
    )
    message = (
        f"every trial with {short} >= {shown} {what}"
        if others
        else f"all {len(failed)} failed trials had {short} >= {shown} and {what}"
    )
    return FailureDiagnosis(
        common=True,
        cause=cause,
        message=message,
        fix=fix,
        param=key,
        threshold=t,
        counts=dict(counts),
    )
