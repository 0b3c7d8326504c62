"""MLflow tracking cost, against a real `mlflow server` started here (SQLite store, local artifacts, loopback):

- poll overhead: the after-refresh + get_job hooks on a running train job whose status.json gains 10 records
  per poll, tracking off vs on (tracker up) vs on (tracker down) - the caller's thread only: sending happens
  in the background thread;
- a 100-epoch run: metric points written (train loss/lr per iteration, AP11/AP40 per epoch), polls, and the
  time from the run's end until everything is in MLflow;
- a 20-trial study: time from the export of its records until the parent run and all 20 nested runs
  can be listed in MLflow.

    python3 benchmarks/tracking_bench.py [--quick]
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tao_bevfusion.core.layout import status_path
from tao_bevfusion.core.settings import Settings
from tao_bevfusion.jobs import hooks
from tao_bevfusion.jobs.context import AppContext
from tao_bevfusion.jobs.store import Job
from tao_bevfusion.present.summary import summarize
from tao_bevfusion.tracking import config as C
from tao_bevfusion.tracking.hooks import install
from tao_bevfusion.tracking.sender import SENDER

from tests.mlflowfix import MlflowServer, free_port

ITERS_PER_EPOCH = 20


def train_line(it: int) -> str:
    return json.dumps({"mode": "train", "cur_iter": it, "loss": round(6.5 / it ** 0.5, 4), "lr": 2e-4,
                       "date": "12/7/2026", "time": "10:0:0", "status": "RUNNING"}) + "\n"


def val_line(epoch: int) -> str:
    return json.dumps({"mode": "val", "epoch": epoch, "AP11": 10 + epoch * 0.1, "AP40": 8 + epoch * 0.1,
                       "date": "12/7/2026", "time": "10:0:0", "status": "RUNNING"}) + "\n"


def make_job(ctx: AppContext, root: Path, name: str, uri: str | None, **fields: Any) -> Job:
    results = root / name
    (results / "train").mkdir(parents=True)
    job = ctx.store.create(action="train", backend="local", spec_path=str(root / "none.yaml"), spec_sha256="x",
                           results_dir=str(results), data_root=str(root), **fields)
    ctx.store.update(job.id, state="running", started_at=time.time())
    if uri:
        hooks.launched(job, {"mlflow": uri, "experiment": "bench"}, ctx)
    return ctx.store.get(job.id)


def poll(job: Job, ctx: AppContext) -> float:
    t = time.perf_counter()
    hooks.refreshed(job, ctx)
    hooks.decorated(summarize(job), job, ctx)
    return time.perf_counter() - t


def poll_overhead(ctx: AppContext, root: Path, uri: str, polls: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, target in (("off", None), ("on", uri), ("on_tracker_down", f"http://127.0.0.1:{free_port()}")):
        job = make_job(ctx, root, f"poll-{label}", target)
        path = status_path("train", Path(job.results_dir), root)
        times = []
        for i in range(polls):
            with open(path, "a") as fh:
                fh.writelines(train_line(i * 10 + k + 1) for k in range(10))
            times.append(poll(job, ctx))
        out[label] = {"p50_ms": round(statistics.median(times) * 1000, 3),
                      "p95_ms": round(sorted(times)[int(len(times) * 0.95) - 1] * 1000, 3)}
    return out


def hundred_epochs(ctx: AppContext, root: Path, uri: str, epochs: int) -> dict[str, Any]:
    from mlflow.tracking import MlflowClient

    job = make_job(ctx, root, "epochs", uri)
    path = status_path("train", Path(job.results_dir), root)
    polls = 0
    for epoch in range(1, epochs + 1):
        with open(path, "a") as fh:
            base = (epoch - 1) * ITERS_PER_EPOCH
            fh.writelines(train_line(base + k + 1) for k in range(ITERS_PER_EPOCH))
            fh.write(val_line(epoch))
        hooks.refreshed(job, ctx)
        polls += 1
    verdict = {"outcome": "succeeded", "reason": "bench"}
    ctx.store.update(job.id, state="succeeded", finished_at=time.time(), verdict=verdict)
    t = time.perf_counter()
    hooks.refreshed(ctx.store.get(job.id), ctx)
    sent = SENDER.flush(300, {job.id})
    drain_s = time.perf_counter() - t
    client = MlflowClient(uri)
    run_id = _run_id(ctx, job.id)
    points = {k: len(client.get_metric_history(run_id, k)) for k in ("train/loss", "train/lr", "val/AP11",
                                                                       "val/AP40")}
    return {"epochs": epochs, "iterations": epochs * ITERS_PER_EPOCH, "polls": polls, "all_sent": sent,
            "metric_points": points, "total_points": sum(points.values()),
            "end_to_all_in_mlflow_s": round(drain_s, 2)}


def _run_id(ctx: AppContext, job_id: str) -> str:
    from tao_bevfusion.tracking.outbox import Outbox

    run_id = Outbox(C.export_dir(ctx.settings.home, job_id)).state().run_id
    assert run_id, "the run was never created"
    return run_id


def study_runs(ctx: AppContext, root: Path, uri: str, trials: int) -> dict[str, Any]:
    from mlflow.tracking import MlflowClient

    study = make_job(ctx, root, "study", uri, kind="study")
    ids = []
    for n in range(trials):
        trial = make_job(ctx, root, f"trial_{n:03d}", None, owner_id=study.id)
        with open(status_path("train", Path(trial.results_dir), root), "a") as fh:
            fh.writelines([train_line(1), val_line(1)])
        ids.append(trial.id)
    t = time.perf_counter()
    for trial_id in ids:
        hooks.refreshed(ctx.store.get(trial_id), ctx)
    enqueue_s = time.perf_counter() - t
    client = MlflowClient(uri)
    exp = None
    while time.perf_counter() - t < 300:
        exp = exp or client.get_experiment_by_name("bench")
        if exp is not None:
            found = client.search_runs([exp.experiment_id], filter_string=f"tags.`tao.study_id` = '{study.id}'",
                                       max_results=100)
            if len(found) == trials:
                break
        time.sleep(0.2)
    return {"trials": trials, "enqueue_all_s": round(enqueue_s, 3),
            "all_nested_runs_listed_s": round(time.perf_counter() - t, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer polls, 100 epochs of 20 iterations")
    args = parser.parse_args()
    install()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["TAO_BEVFUSION_HOME"] = str(root / "home")
        os.environ["TAO_BEVFUSION_ROOTS"] = str(root)
        ctx = AppContext(Settings.from_env())
        server = MlflowServer(root / "mlflow").start()
        try:
            results = {"poll_overhead": poll_overhead(ctx, root, server.uri, 50 if args.quick else 300),
                       "run_100_epochs": hundred_epochs(ctx, root, server.uri, 100),
                       "study_20_trials": study_runs(ctx, root, server.uri, 20)}
        finally:
            server.stop()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
