"""One outbox op -> MLflow client calls. Each op can be repeated safely: a start finds the run it made
before (by its tao.job_id tag), metrics carry fixed timestamps (exact repeats are ignored by the store),
params are written once with the same values, tags and artifacts overwrite."""

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tao_bevfusion.jobs.context import AppContext
from tao_bevfusion.tracking import config as C
from tao_bevfusion.tracking.outbox import Outbox, SendState

BATCH_METRICS = 1000
BATCH_PARAMS = 100
Drain = Callable[
    [Path, str, AppContext], object
]  # the sender's drain of another job (a parent first)


class Deferred(Exception):
    """The op needs another run first (a trial's study run, the best trial's run): try again soon."""


class Refused(Exception):
    """The tracker answered with an error about this op (not an outage)."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting


def _experiment(client: Any, cfg: C.TrackingConfig) -> str:
    try:
        found = client.get_experiment_by_name(cfg.experiment)
        if found is not None and found.lifecycle_stage == "deleted":
            raise Refused(
                "tracking.experiment",
                f"experiment {cfg.experiment!r} is deleted in MLflow: restore it "
                "(mlflow experiments restore) or choose another name",
            )
        return (
            str(found.experiment_id)
            if found is not None
            else str(client.create_experiment(cfg.experiment))
        )
    except Refused:
        raise
    except Exception as exc:
        if getattr(exc, "error_code", "") in (
            "INVALID_PARAMETER_VALUE",
            "RESOURCE_ALREADY_EXISTS",
            "BAD_REQUEST",
        ):
            raise Refused(
                "tracking.experiment", f"experiment name {cfg.experiment!r}: {exc}"
            ) from exc
        raise


def run_of(home: Path, job_id: str, ctx: AppContext, drain: Drain) -> SendState:
    """The send state (run id) of another job, draining it first so a parent exists before its child."""
    drain(home, job_id, ctx)
    return Outbox(C.export_dir(home, job_id)).state()


def _start(
    client: Any,
    op: dict[str, Any],
    state: SendState,
    cfg: C.TrackingConfig,
    ctx: AppContext,
    home: Path,
    drain: Drain,
) -> None:
    from mlflow.entities import Param

    tags = dict(op["tags"])
    if op.get("parent"):
        parent = run_of(home, op["parent"], ctx, drain)
        if parent.run_id:
            tags["mlflow.parentRunId"] = parent.run_id
        elif not parent.gave_up:
            raise Deferred()
    experiment_id = state.experiment_id or _experiment(client, cfg)
    state.experiment_id = experiment_id
    if not state.run_id:
        found = client.search_runs(
            [experiment_id], filter_string=f"tags.`tao.job_id` = '{op['job_id']}'", max_results=1
        )
        run = (
            found[0]
            if found
            else client.create_run(
                experiment_id,
                start_time=op["start_ms"],
                tags=tags,
                run_name=tags.get("mlflow.runName"),
            )
        )
        state.run_id = run.info.run_id
    params = [Param(k, str(v)) for k, v in op["params"].items()]
    for i in range(0, len(params), BATCH_PARAMS):
        client.log_batch(state.run_id, params=params[i : i + BATCH_PARAMS])


def _metrics(client: Any, op: dict[str, Any], state: SendState) -> None:
    from mlflow.entities import Metric

    rows = [Metric(str(k), float(v), int(ts), int(step)) for k, v, ts, step in op["metrics"]]
    for i in range(0, len(rows), BATCH_METRICS):
        client.log_batch(state.run_id, metrics=rows[i : i + BATCH_METRICS])


def _tags(client: Any, run_id: str, tags: dict[str, str]) -> None:
    from mlflow.entities import RunTag

    client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def _artifacts(client: Any, op: dict[str, Any], state: SendState, ctx: AppContext) -> None:
    from tao_bevfusion.tracking.artifacts import write_artifacts

    job = ctx.store.get(op["job_id"])
    with tempfile.TemporaryDirectory(prefix="tao-mlflow-") as tmp:
        folder = Path(tmp)
        write_artifacts(job, ctx, folder)
        client.log_artifacts(state.run_id, str(folder))


def _other_run(op: dict[str, Any], home: Path, ctx: AppContext, drain: Drain) -> str:
    other = run_of(home, op["job_id"], ctx, drain)
    if not other.run_id:
        if other.gave_up:
            raise Refused(
                "tracking", f"the run of {op['job_id']} was never created: {other.gave_up}"
            )
        raise Deferred()
    return other.run_id


def _register(
    client: Any, op: dict[str, Any], state: SendState, home: Path, ctx: AppContext, drain: Drain
) -> None:
    trial_run = _other_run(op, home, ctx, drain)
    pointer = {
        "checkpoint": op.get("checkpoint"),
        "epoch": op.get("epoch"),
        "AP11": op.get("value"),
        "job_id": op["job_id"],
    }
    with tempfile.TemporaryDirectory(prefix="tao-mlflow-") as tmp:
        path = Path(tmp) / "checkpoint.json"
        path.write_text(json.dumps(pointer, indent=1))
        client.log_artifact(trial_run, str(path), "best_checkpoint")
    name = op["name"]
    try:
        client.create_registered_model(name)
    except Exception as exc:
        if getattr(exc, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
            raise
    existing = client.search_model_versions(f"name = '{name}' and run_id = '{trial_run}'")
    version = (
        existing[0]
        if existing
        else client.create_model_version(
            name,
            f"runs:/{trial_run}/best_checkpoint",
            run_id=trial_run,
            tags={"tao.checkpoint": str(op.get("checkpoint")), "tao.job_id": op["job_id"]},
        )
    )
    _tags(client, state.run_id or "", {"tao.registered_model": f"{name}/{version.version}"})


def apply(
    client: Any,
    op: dict[str, Any],
    state: SendState,
    cfg: C.TrackingConfig,
    ctx: AppContext,
    home: Path,
    drain: Drain,
) -> None:
    kind = op.get("op")
    if kind == "start":
        _start(client, op, state, cfg, ctx, home, drain)
        return
    if kind == "skip":
        return
    if not state.run_id:
        raise Refused(cfg.setting, "no run to write to (its start was never accepted)")
    if kind == "metrics":
        _metrics(client, op, state)
    elif kind == "tags":
        _tags(client, state.run_id, op["tags"])
    elif kind == "tag_run":
        _tags(client, _other_run(op, home, ctx, drain), op["tags"])
    elif kind == "artifacts":
        _artifacts(client, op, state, ctx)
    elif kind == "register":
        _register(client, op, state, home, ctx, drain)
    elif kind == "end":
        client.set_terminated(state.run_id, op["status"], end_time=op["end_ms"])
