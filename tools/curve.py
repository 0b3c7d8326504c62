"""Training curve (loss per iteration, AP11/AP40 per epoch) of a train job as PNG bytes."""

import io
import json
from pathlib import Path

from tools.errors import ToolInputError, problem
from tools.jobstore import Job


def curve_data(job: Job) -> tuple[list[tuple[int, float]], list[tuple[int, float, float]]]:
    path = Path(job.results_dir) / "train" / "status.json"
    losses: list[tuple[int, float]] = []
    aps: list[tuple[int, float, float]] = []
    if not path.is_file():
        return losses, aps
    with open(path, "rb") as fh:
        for line in fh:
            if b'"mode"' not in line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("mode") == "train" and isinstance(rec.get("loss"), (int, float)):
                losses.append((int(rec["cur_iter"]), float(rec["loss"])))
            elif rec.get("mode") == "val":
                aps.append((int(rec["epoch"]), float(rec.get("AP11", "nan")), float(rec.get("AP40", "nan"))))
    step = max(1, len(losses) // 2000)  # keep plotting cheap on long runs
    return losses[::step], aps


def training_curve_png(job: Job) -> bytes:
    if job.action != "train":
        raise ToolInputError(problem("job_id", f"{job.id} is a {job.action} job", "pass a train job id"))
    losses, aps = curve_data(job)
    if not losses and not aps:
        raise ToolInputError(problem("job_id", "no train/val records yet", "wait for the first iterations"))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4), dpi=100)
    if losses:
        ax1.plot([x for x, _ in losses], [y for _, y in losses], color="#1f77b4")
    ax1.set(title="train loss", xlabel="iteration", ylabel="loss")
    if aps:
        ax2.plot([e for e, _, _ in aps], [a for _, a, _ in aps], marker="o", label="AP11")
        ax2.plot([e for e, _, _ in aps], [b for _, _, b in aps], marker="s", label="AP40")
        ax2.legend()
    ax2.set(title="validation (3D, moderate, strict)", xlabel="epoch", ylabel="AP (0-100)")
    from matplotlib.ticker import MaxNLocator

    ax2.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(f"{job.id} BEVFusion train ({job.state})", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
