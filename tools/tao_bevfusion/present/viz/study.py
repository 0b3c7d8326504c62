"""A study's pictures as one PNG: optimisation history, each searched parameter against AP11, and the
validation curves of the best trials. Drawn from the driver's snapshot and the trials' status.json."""

import math
from pathlib import Path
from typing import Any

from tao_bevfusion.core import layout
from tao_bevfusion.core.errors import InputError, problem
from tao_bevfusion.evidence.status import read_all
from tao_bevfusion.jobs.context import AppContext
from tao_bevfusion.jobs.store import Job
from tao_bevfusion.present.viz.figure import png, pyplot

COLORS = {"complete": "#2ca02c", "pruned": "#ff7f0e", "fail": "#d62728", "running": "#1f77b4"}
TOP_CURVES = 3


def _curve(job: Job) -> list[tuple[int, float]]:
    path = layout.status_path("train", Path(job.results_dir), Path(job.data_root))
    return [
        (r.epoch, r.AP11)
        for r in read_all(path)
        if r.is_validation and r.epoch is not None and r.AP11 is not None
    ]


def _history(ax: Any, trials: list[dict[str, Any]]) -> None:
    best = -math.inf
    xs, ys = [], []
    for t in trials:
        if t.get("value") is None:
            continue
        ax.scatter(t["number"], t["value"], color=COLORS.get(t["state"], "grey"), s=28, zorder=3)
        if t["state"] == "complete":
            best = max(best, t["value"])
            xs.append(t["number"])
            ys.append(best)
    if xs:
        ax.step(xs, ys, where="post", color="black", lw=1, label="best so far")
        ax.legend(fontsize=7)
    ax.set(xlabel="trial", ylabel="best val AP11")
    ax.set_title("history (green complete, orange pruned)", fontsize=9)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _params(fig: Any, grid: Any, trials: list[dict[str, Any]], keys: list[str]) -> None:
    scored = [t for t in trials if t.get("value") is not None]
    for i, key in enumerate(keys):
        ax = fig.add_subplot(grid[1, i])
        for t in scored:
            if key in t["params"]:
                ax.scatter(t["params"][key], t["value"], color=COLORS.get(t["state"], "grey"), s=22)
        values = [
            t["params"][key] for t in scored if isinstance(t["params"].get(key), (int, float))
        ]
        if values and min(values) > 0 and max(values) / min(values) > 20:
            ax.set_xscale("log")
        ax.set(xlabel=key, ylabel="AP11" if i == 0 else None)
        ax.set_title(key.rsplit(".", 1)[-1], fontsize=9)
        ax.xaxis.label.set_size(7)


def study_png(job: Job, ctx: AppContext) -> bytes:
    from tao_bevfusion.studies.status import snapshot

    snap = snapshot(Path(job.results_dir))
    trials = snap.get("trials", [])
    if not any(t.get("value") is not None for t in trials):
        raise InputError(
            problem("job_id", "no trial has a validation AP11 yet", "wait for the first validation")
        )
    plt = pyplot()

    keys = sorted({k for t in trials for k in t["params"]})[:4]
    ncols = max(len(keys), 2)
    fig = plt.figure(figsize=(max(3.4 * ncols, 8.0), 6.4), dpi=90)
    grid = fig.add_gridspec(2, ncols)
    _history(fig.add_subplot(grid[0, : ncols // 2]), trials)
    ax = fig.add_subplot(grid[0, ncols // 2 :])
    top = sorted(
        (t for t in trials if t.get("value") is not None and t.get("job_id")),
        key=lambda t: -t["value"],
    )[:TOP_CURVES]
    for t in top:
        points = _curve(ctx.store.get(t["job_id"]))
        ax.plot(
            [e for e, _ in points], [a for _, a in points], marker="o", label=f"trial {t['number']}"
        )
    ax.set(xlabel="epoch", ylabel="AP11")
    ax.set_title("best trials: val AP11 per epoch", fontsize=9)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if top:
        ax.legend(fontsize=7)
    _params(fig, grid, trials, keys)
    fig.suptitle(f"{job.id} AutoML study ({job.state})", fontsize=10)
    fig.tight_layout()
    return png(fig)
