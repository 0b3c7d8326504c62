"""The ten tools as plain functions: one pydantic input model each, a result model, and a short digest.

The MCP server (tools.server) and the CLI (tools.cli) are thin layers over TOOLS; tests call these
directly too. Each function takes its validated input model and returns (result, digest text).
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

from tools import checkpoints, dataset, jobs, policy, specbuild
from tools.jobs import JobListItem

Action = Literal["dataset_convert", "train", "evaluate", "inference"]


class RouteRequestInput(BaseModel):
    request: str = Field(max_length=2000, description="The user's request, verbatim.")


class PolicyInput(BaseModel):
    action: Action = Field(description="The action about to run.")
    request: str | None = Field(default=None, max_length=2000, description="The user's words (may turn AutoML off).")
    automl_policy: str | None = Field(default=None, max_length=16, description="'on' or 'off'; wins over the request.")


class CheckDatasetInput(BaseModel):
    data_root: str = Field(max_length=4096, description="Absolute host path of the KITTI root.")
    action: Action = Field(description="The action to check the root for (convert needs raw data; the others "
                           "need converted pickles and velodyne_reduced).")


class ResolveCheckpointInput(BaseModel):
    parent_job_id: str | None = Field(default=None, max_length=64, description="A train job id (preferred).")
    results_dir: str | None = Field(default=None, max_length=4096, description="Or a train results folder (host).")
    choose: Literal["best", "final", "latest"] | None = Field(default=None, description=(
        "best = highest validation AP11 with a checkpoint; final = last epoch of a succeeded train; latest = newest "
        "file (only when asked). Default after a succeeded train: best if validated, else final."))
    epoch: int | None = Field(default=None, ge=1, le=100000, description="An exact epoch; wins over choose.")
    metric: Literal["AP11", "AP40"] = Field(default="AP11", description="Metric for 'best'.")


class JobIdInput(BaseModel):
    job_id: str = Field(max_length=64, description="A job id from run_action or list_jobs.")
    include_curve: bool = Field(default=False, description="train jobs: also return the training curve as a PNG.")


class LogsInput(BaseModel):
    job_id: str = Field(max_length=64, description="A job id.")
    tail_lines: int | None = Field(default=None, ge=1, le=500, description="Last N lines (default 50).")
    offset: int | None = Field(default=None, ge=0, description="Read forward from this byte offset (next_offset).")
    grep: str | None = Field(default=None, max_length=200, description="Only lines matching this regex.")
    max_bytes: int = Field(default=4096, ge=256, le=6000, description="Cap on returned text (results stay under 8 KB).")


class ListJobsInput(BaseModel):
    state: Literal["pending", "running", "succeeded", "failed", "canceled", "unknown"] | None = Field(
        default=None, description="Only jobs in this state.")
    action: Action | None = Field(default=None, description="Only jobs of this action.")
    limit: int = Field(default=20, ge=1, le=100, description="At most this many, newest first.")


class CancelInput(BaseModel):
    job_id: str = Field(max_length=64, description="The job to stop.")
    force: bool = Field(default=False, description="Kill at once instead of a 5 s graceful stop.")


class JobList(BaseModel):
    jobs: list[JobListItem] = Field(description="Newest first; poll a running one with get_job.")


def _route(inp: RouteRequestInput) -> tuple[policy.RouteResult, str]:
    r = policy.route_request(inp.request)
    if not r.matched:
        return r, f"not a BEVFusion request ({r.ambiguity})"
    if r.unsupported:
        return r, f"BEVFusion request, but unsupported: {r.unsupported}"
    if r.action is None:
        return r, f"BEVFusion request; action unclear: {r.ambiguity}"
    extra = f", AutoML {r.automl_policy}" if r.automl_policy else ""
    return r, f"tao-train-bevfusion -> {r.action}{extra} (confidence {r.confidence})"


def _policy(inp: PolicyInput) -> tuple[policy.AutoMLDecision, str]:
    d = policy.resolve_automl_policy(inp.action, request=inp.request, automl_policy=inp.automl_policy)
    return d, f"automl_policy={d.automl_policy}, route={d.route}: {d.reason}"


def _check(inp: CheckDatasetInput) -> tuple[dataset.DatasetReport, str]:
    r = dataset.check_dataset(inp.data_root, inp.action)
    errors = [p for p in r.problems if p.severity == "error"]
    head = f"{'ready' if r.ok else 'NOT ready'} for {inp.action}: frames {r.frames}"
    lines = [f"- [{p.severity}] {p.code} {p.path}: {p.message} -> {p.fix}" for p in (errors or r.problems)[:6]]
    return r, "\n".join([head, *lines])


def _build(inp: specbuild.BuildSpecInput) -> tuple[specbuild.BuildSpecResult, str]:
    r = specbuild.build_spec(inp)
    text = [f"wrote {r.action} spec {r.spec_path} (results -> {r.results_dir}); {len(r.changes)} keys set"]
    text += [f"warning: {w}" for w in r.warnings]
    text.append(f"next: run_action(action='{r.action}', spec_path='{r.spec_path}'"
                + (", automl_policy='off')" if r.action == "train" else ")"))
    return r, "\n".join(text)


def _resolve(inp: ResolveCheckpointInput) -> tuple[checkpoints.CheckpointChoice, str]:
    c = checkpoints.resolve_parent_checkpoint(parent_job_id=inp.parent_job_id, results_dir=inp.results_dir,
                                              choose=inp.choose, epoch=inp.epoch, metric=inp.metric)
    return c, f"epoch {c.epoch}: {c.path} ({c.method}); {len(c.candidates)} checkpoints found"


def _run(inp: jobs.RunActionInput) -> tuple[jobs.RunActionResult, str]:
    r = jobs.run_action(inp)
    if r.state == "routed":
        return r, r.message
    if r.state == "planned":
        assert r.plan is not None
        failed = [c for c in r.plan.preflight if not c.ok]
        head = f"dry run (nothing launched): {' '.join(r.plan.command)}"
        return r, "\n".join([head] + [f"preflight would stop it: {c.message} -> {c.fix}" for c in failed])
    assert r.summary is not None
    return r, f"{r.summary.digest}\nnext: {'; '.join(r.summary.next_steps[:2])}"


def job_digest(s: Any) -> str:
    lines = [s.digest]
    lines += [f"{e.severity}: {e.pattern}: {e.evidence[:160]} -> {e.remedy}" for e in s.errors[:3]]
    lines.append("next: " + "; ".join(s.next_steps[:3]))
    return "\n".join(lines)


def _get(inp: JobIdInput) -> tuple[Any, str]:
    s = jobs.get_job(inp.job_id)
    return s, job_digest(s)


def _logs(inp: LogsInput) -> tuple[jobs.LogPage, str]:
    page = jobs.get_job_logs(inp.job_id, tail_lines=inp.tail_lines, offset=inp.offset, grep=inp.grep,
                             max_bytes=inp.max_bytes)
    return page, f"{page.text}\n[{page.hint}; truncated={page.truncated}]"


def _list(inp: ListJobsInput) -> tuple[JobList, str]:
    items = jobs.list_jobs(state=inp.state, action=inp.action, limit=inp.limit)
    lines = [f"{j.job_id} {j.action} {j.state}" + (f" ({j.outcome})" if j.outcome else "") for j in items]
    return JobList(jobs=items), "\n".join(lines) or "no jobs"


def _cancel(inp: CancelInput) -> tuple[jobs.CancelResult, str]:
    r = jobs.cancel_job(inp.job_id, force=inp.force)
    return r, f"{r.job_id}: {r.state} ({r.message})"


@dataclass(frozen=True)
class ToolDef:
    name: str
    input: type[BaseModel]
    output: type[BaseModel]
    fn: Callable[[Any], tuple[Any, str]]
    read_only: bool
    destructive: bool
    idempotent: bool
    open_world: bool
    doc: str


TOOLS: list[ToolDef] = [
    ToolDef("route_request", RouteRequestInput, policy.RouteResult, _route, True, False, True, False,
            "Decide whether a user request belongs to this skill (TAO BEVFusion: LiDAR + camera fusion, BEV 3D "
            "detection, multi-sensor 3D perception) and which action it asks for. Call first on a new request."),
    ToolDef("resolve_automl_policy", PolicyInput, policy.AutoMLDecision, _policy, True, False, True, False,
            "Apply the skill's Train Action Policy: for train, an explicit automl_policy ('on'/'off') wins, else "
            "phrases like 'no HPO' or 'plain training' mean off for this run, else on. On + runnable routes train "
            "to tao-skill-bank:tao-run-automl. Other actions are always direct."),
    ToolDef("check_dataset", CheckDatasetInput, dataset.DatasetReport, _check, True, False, True, False,
            "Preflight a KITTI root before spending GPU time: ImageSets, every frame in every modality, velodyne "
            "sizes, calib keys, labels (person class), writability for convert, converted pickles for the rest. "
            "Each problem has a code, the path and the fix."),
    ToolDef("build_spec", specbuild.BuildSpecInput, specbuild.BuildSpecResult, _build, False, False, False, False,
            "Write a TAO 5.5 BEVFusion spec that the 5.5 container accepts (KITTI prefixes, CAM2, stubs, nulls, "
            "LR schedule rescaled, no Swin download, container paths). Lists what it set and why; on bad input "
            "returns every problem and writes nothing. Paths are host paths; data_root is required."),
    ToolDef("resolve_parent_checkpoint", ResolveCheckpointInput, checkpoints.CheckpointChoice, _resolve, True,
            False, True, False,
            "Pick the checkpoint of a train job for evaluate/inference/resume, explained: exact epoch, best "
            "(highest val AP11 that has a .pth), final, or latest (only on request). Never guesses a neighbour."),
    ToolDef("run_action", jobs.RunActionInput, jobs.RunActionResult, _run, False, False, False, True,
            "Launch dataset_convert/train/evaluate/inference in the TAO 5.5 container (docker) or on the host "
            "(local), from a build_spec spec_path or the build_spec inputs. Returns a job_id within seconds; poll "
            "get_job. dry_run=true returns the exact plan and preflight. Train with AutoML policy on returns the "
            "routing decision instead of launching (pass automl_policy='off' to train directly)."),
    ToolDef("get_job", JobIdInput, jobs.JobSummary, _get, True, False, True, False,
            "State, verdict (never from the exit code alone), progress (epoch/iteration/loss), AP11/AP40, matched "
            "errors with remedies, artifacts and next calls for one job. Safe to poll every ~30 s."),
    ToolDef("get_job_logs", LogsInput, jobs.LogPage, _logs, True, False, True, False,
            "Page a job's combined log: the tail (default 50 lines), forward from a byte offset, or lines "
            "matching a regex. Returns next_offset for the next page."),
    ToolDef("list_jobs", ListJobsInput, JobList, _list, True, False, True, False,
            "List recent jobs (newest first), optionally by state or action."),
    ToolDef("cancel_job", CancelInput, jobs.CancelResult, _cancel, False, True, True, False,
            "Stop a running job and record it as canceled. Idempotent: a finished job is reported unchanged."),
]

def tool(name: str) -> ToolDef:
    return next(t for t in TOOLS if t.name == name)


def call(name: str, args: dict[str, Any]) -> tuple[Any, str]:
    """Validate `args` with the tool's own model and run it (used by the CLI and tests)."""
    t = tool(name)
    return t.fn(t.input.model_validate(args))


def dumps(model: BaseModel) -> str:
    return json.dumps(model.model_dump(mode="json"), indent=2)
