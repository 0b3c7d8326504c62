"""The verdict (docs/container-contract.md §6): decided from all the evidence, never the exit code alone.

5.5 exits 0 on failure, never writes SUCCESS, and can segfault after a good evaluation, so the order of
the rules below matters: each row is checked only when none above it applied.
"""

from pathlib import Path

from pydantic import BaseModel, Field

from tao_bevfusion.core.calls import quoted
from tao_bevfusion.core.states import Outcome
from tao_bevfusion.evidence.models import Evidence


class Verdict(BaseModel):
    outcome: Outcome
    reason: str
    usable_artifacts: list[str] = Field(default_factory=list)
    missing_artifacts: list[str] = Field(default_factory=list)
    exit_code: int | None = None
    footer: str | None = None
    next_call: str | None = Field(
        default=None, description="The call that addresses this outcome (diverged, limit_reached)."
    )


def _verdict(ev: Evidence, outcome: Outcome, reason: str) -> Verdict:
    return Verdict(
        outcome=outcome,
        reason=reason,
        usable_artifacts=ev.present,
        missing_artifacts=ev.missing,
        exit_code=ev.exit_code,
        footer=ev.findings.footer,
    )


def _abnormal_end(ev: Evidence) -> Verdict | None:
    """Gone, never started, or killed from outside."""
    st, code = ev.findings.status, ev.exit_code
    if ev.container_missing and code is None:
        if ev.cancel_requested:
            return _verdict(ev, Outcome.CANCELED, "canceled; the process is gone")
        return _verdict(
            ev,
            Outcome.LOST,
            "the container/process is gone and left no exit code; outcome unknown "
            "(check the results folder)",
        )
    if code in (125, 126, 127) and not st.records:
        return _verdict(ev, Outcome.FAILED, f"the container could not start (exit {code})")
    killed = code == 137 or (code is not None and code > 128 and not st.finished)
    if killed or (ev.oom_killed and not st.finished):
        if ev.cancel_requested:
            return _verdict(ev, Outcome.CANCELED, f"canceled on request (exit {code})")
        if ev.oom_killed:
            return _verdict(
                ev,
                Outcome.KILLED,
                "killed by the out-of-memory killer (OOMKilled): lower "
                "batch_size/num_workers or raise the memory limit",
            )
        return _verdict(ev, Outcome.KILLED, f"killed by a signal from outside (exit {code})")
    if code == 1 and not st.records:
        err = ev.findings.last_error_line
        if err:  # the root cause (a wrong image says "No module named 'mmdet3d'"), not a guess
            return _verdict(
                ev, Outcome.FAILED, f"failed before the action started: {quoted(err, 200, 'log')}"
            )
        return _verdict(
            ev, Outcome.FAILED, "the launcher refused to start (spec path or -e missing)"
        )
    return None


def _finished(ev: Evidence, finished: str) -> Verdict:
    footer, missing = ev.findings.footer, ev.missing
    if missing:
        names = ", ".join(Path(m).name for m in missing[:3])
        names += f" (+{len(missing) - 3} more)" if len(missing) > 3 else ""
        return _verdict(
            ev,
            Outcome.FAILED,
            f"the action says it finished but {len(missing)} expected artifact(s) are "
            f"missing ({names}; full paths in verdict.missing_artifacts): it stopped before writing them "
            "(for a resume: num_epochs not above the checkpoint's epoch) or wrote them elsewhere",
        )
    if footer == "FAIL" and ev.findings.sigsegv:
        return _verdict(
            ev,
            Outcome.SUCCEEDED_WITH_TEARDOWN_CRASH,
            "artifacts complete, then the process crashed at "
            "teardown (SIGSEGV, cuMemRetainAllocationHandle): results usable, process FAIL",
        )
    if footer == "FAIL":
        return _verdict(ev, Outcome.FAILED, "finished line present but the launcher reported FAIL")
    return _verdict(
        ev,
        Outcome.SUCCEEDED,
        f"finished ({quoted(finished, 120, 'status.json')}) with the expected artifacts",
    )


def decide(ev: Evidence) -> Verdict:
    """The verdict table, in order of precedence."""
    early = _abnormal_end(ev)
    if early is not None:
        return early
    f, st = ev.findings, ev.findings.status
    if st.interrupted:
        if ev.cancel_requested:
            return _verdict(ev, Outcome.CANCELED, "canceled on request")
        return _verdict(
            ev, Outcome.FAILED, "the action was interrupted (the PASS footer is misleading)"
        )
    if st.failures:
        return _verdict(
            ev,
            Outcome.FAILED,
            f"FAILURE in status.json: {quoted(st.failures[-1], 200, 'status.json')}",
        )
    if st.finished:
        return _finished(ev, st.finished)
    if f.sigsegv or f.sigkill:
        kind = "SIGKILL (often the OOM killer)" if f.sigkill else "SIGSEGV"
        return _verdict(ev, Outcome.FAILED, f"a worker crashed ({kind}) before the action finished")
    if not st.records:
        err = (
            quoted(f.last_error_line, 200, "log") if f.last_error_line else "no status.json records"
        )
        return _verdict(ev, Outcome.FAILED, f"failed before the action started: {err}")
    return _verdict(
        ev,
        Outcome.FAILED,
        "the process ended without a finished line (it died without a Python "
        f"exception); exit {ev.exit_code}, footer {f.footer}",
    )
