"""Training curve (loss per iteration, AP11/AP40 per epoch) of a train job as PNG bytes."""

from pathlib import Path

from tao_bevfusion.core import layout
from tao_bevfusion.core.errors import InputError, problem
from tao_bevfusion.evidence.status import read_all
from tao_bevfusion.jobs.store import Job
from tao_bevfusion.present.viz.figure import png, pyplot

NAN = float("nan")


def curve_data(job: Job) -> tuple[list[tuple[int, float]], list[tuple[int, float, float]]]:
    path = layout.status_path("train", Path(job.results_dir), Path(job.data_root))
    losses: list[tuple[int, float]] = []
    aps: list[tuple[int, float, float]] = []
    for rec in read_all(path):
        if rec.is_train and rec.loss is not None and rec.cur_iter is not None:
            losses.append((rec.cur_iter, rec.loss))
        elif rec.is_validation and rec.epoch is not None:
            aps.append(
                (
                    rec.epoch,
                    NAN if rec.AP11 is None else rec.AP11,
                    NAN if rec.AP40 is None else rec.AP40,
                )
            )
    step = max(1, len(losses) // 2000)  # keep plotting cheap on long runs
    return losses[::step], aps


def training_curve_png(job: Job) -> bytes:
    if job.action != "train":
        raise InputError(
            problem("job_id", f"{job.id} is a {job.action} job", "pass a train job id")
        )
    losses, aps = curve_data(job)
    if not losses and not aps:
        raise InputError(
            problem("job_id", "no train/val records yet", "wait for the first iterations")
        )
    plt = pyplot()

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
    return png(fig)
