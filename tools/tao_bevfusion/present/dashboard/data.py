"""What the dashboard draws besides a tool's structured result: curves, picture resources, and the
calls its buttons make (each an ordinary tool call an agent could make; the adapter validates them)."""

from pathlib import Path
from typing import Any

from tao_bevfusion.jobs.context import AppContext
from tao_bevfusion.jobs.store import Job
from tao_bevfusion.present.summary import JobSummary

MAX_LOSS_POINTS = 200
MAX_PICTURE_FRAMES = 2
MAX_COMPARED_TRIALS = 4


def call(tool: str, **arguments: Any) -> dict[str, Any]:
    return {"tool": tool, "arguments": arguments}


def curves(job: Job, loss_points: int = MAX_LOSS_POINTS) -> dict[str, Any]:
    """Loss per iteration (thinned) and AP11/AP40 per validated epoch, from the job's status.json."""
    from tao_bevfusion.present.viz.curve import curve_data

    losses, aps = curve_data(job)
    step = max(1, -(-len(losses) // loss_points))
    return {
        "loss": [[i, _finite(v)] for i, v in losses[::step]],
        "ap": [[e, _finite(a), _finite(b)] for e, a, b in aps],
    }


def _finite(value: float) -> float | None:
    return None if value != value or value in (float("inf"), float("-inf")) else round(value, 5)


def _study_actions(s: JobSummary, job: Job) -> dict[str, Any]:
    actions: dict[str, Any] = {}
    trials = s.study.trials if s.study else []
    done = sorted(
        (t for t in trials if t.value is not None and t.job_id), key=lambda t: -(t.value or 0.0)
    )
    ids = [t.job_id for t in done[:MAX_COMPARED_TRIALS] if t.job_id]
    if len(ids) >= 2:
        actions["compare"] = call("list_jobs", compare=ids)
    if s.study and s.study.best is not None:
        actions["evaluate_best"] = call(
            "run_action",
            action="evaluate",
            data_root=job.data_root,
            parent_job_id=job.id,
            backend=job.backend,
        )
    return actions


def _pictures(s: JobSummary) -> list[dict[str, str]]:
    rows = (s.detections or {}).get("per_frame") or []
    frames = [str(r.get("frame")) for r in rows[:MAX_PICTURE_FRAMES] if r.get("frame")]
    return [
        {
            "frame": f,
            "bev": f"tao-bevfusion://jobs/{s.job_id}/bev/{f}.png",
            "camera": f"tao-bevfusion://jobs/{s.job_id}/camera/{f}.png",
        }
        for f in frames
    ]


def job_view(s: JobSummary, ctx: AppContext) -> dict[str, Any]:
    """The view data of a get_job result."""
    job = ctx.store.get(s.job_id)
    actions: dict[str, Any] = {"refresh": call("get_job", job_id=s.job_id)}
    if not job.terminal:
        actions["cancel"] = call("cancel_job", job_id=s.job_id)
    view: dict[str, Any] = {"view": "job", "actions": actions}
    if s.kind == "study":
        actions.update(_study_actions(s, job))
    elif s.action == "train" and Path(job.results_dir).is_dir():
        view["curves"] = curves(job)
    elif s.action == "inference":
        view["pictures"] = _pictures(s)
    return view


def compare_view(ids: list[str], ctx: AppContext) -> dict[str, Any]:
    """The view data of list_jobs(compare=[...]): each run's curves, thinner."""
    return {
        "view": "compare",
        "actions": {"refresh": call("list_jobs", compare=ids)},
        "curves": {i: curves(ctx.store.get(i), loss_points=80) for i in ids},
    }


def list_view(train_ids: list[str]) -> dict[str, Any]:
    """The view data of a plain list_jobs result: the runs the page may offer to compare."""
    return {"view": "list", "actions": {"refresh": call("list_jobs")}, "comparable": train_ids[:8]}
