"""The Docker half of benchmarks/run_safety.py: real runs of the stand-in, timed from the engine's own stamps."""

import contextlib
import datetime
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
KITTI_SAMPLE = REPO / "tests" / "data" / "kitti_sample"


@contextlib.contextmanager
def engine() -> Iterator[Any]:
    """A reachable engine: the one DOCKER_HOST names, else a private dockerd (root only), stopped after."""
    import docker

    from tests.dockerfix import _reachable, _start_private_engine

    started = None if _reachable() else _start_private_engine()
    if started is None and not _reachable():
        raise RuntimeError("no Docker engine reachable and none could be started")
    try:
        yield docker.from_env()
    finally:
        if started is not None:
            started[0].terminate()
            started[0].wait(timeout=30)
            shutil.rmtree(started[1], ignore_errors=True)


def _stamp(text: str) -> float:
    """Docker's RFC 3339 nanosecond stamp as epoch seconds."""
    head, _, frac = text.rstrip("Z").partition(".")
    base = datetime.datetime.fromisoformat(head).replace(tzinfo=datetime.UTC).timestamp()
    return base + float(f"0.{frac[:6] or 0}")


def _workspace(base: Path) -> Path:
    (base / "home").mkdir(parents=True, exist_ok=True)
    os.environ.update(TAO_BEVFUSION_HOME=str(base / "home"), TAO_BEVFUSION_ROOTS=str(base))
    kitti = base / "kitti"
    shutil.copytree(KITTI_SAMPLE, kitti)
    return kitti


def _train(kitti: Path, env: dict[str, str], epochs: int, **kw: Any) -> str:
    from tao_bevfusion.jobs.launch import RunActionInput
    from tao_bevfusion.service.run import run_action

    out = run_action(RunActionInput(action="train", data_root=str(kitti), gpus=[], automl_policy="off",
                                    overrides={"num_epochs": epochs, "batch_size": 1}, env=env, **kw))
    assert out.job_id
    return out.job_id


def _wait(job_id: str, timeout: float = 300) -> Any:
    from tao_bevfusion.service.jobs import get_job

    end = time.monotonic() + timeout
    while (s := get_job(job_id)).state in ("pending", "running") and time.monotonic() < end:
        time.sleep(0.5)
    return s


def _watch_container(client: Any, job_id: str, until: float) -> dict[str, Any] | None:
    """The container's State once it has exited (polled every 50 ms), before the plugin removes it."""
    from docker.errors import NotFound

    while time.monotonic() < until:
        try:
            state = client.containers.get(f"tao-{job_id}").attrs["State"]
        except NotFound:
            state = None
        if state and state.get("Status") == "exited":
            return dict(state)
        time.sleep(0.05)
    return None


def divergence(client: Any, kitti: Path) -> dict[str, Any]:
    from tao_bevfusion.jobs.context import app_context

    job_id = _train(kitti, {"FAKE_TAO_NAN_FROM_EPOCH": "2", "FAKE_TAO_ITER_SECONDS": "0.3"}, 30)
    status = Path(app_context().store.get(job_id).results_dir) / "train" / "status.json"
    first_nan = None
    end = time.monotonic() + 120
    while first_nan is None and time.monotonic() < end:
        if status.exists() and b"NaN" in status.read_bytes():
            first_nan = time.time()
        time.sleep(0.05)
    state = _watch_container(client, job_id, time.monotonic() + 120)
    s = _wait(job_id)
    stopped = _stamp(state["FinishedAt"]) if state else None
    return {"outcome": s.verdict.outcome if s.verdict else None, "epoch": s.progress.epoch,
            "first_nonfinite_to_stopped_s": round(stopped - first_nan, 2) if stopped and first_nan else None,
            "note": "3 consecutive non-finite losses are needed; iterations take 0.3 s; watchdog tick 2 s"}


def limit(client: Any, kitti: Path) -> dict[str, Any]:
    from tao_bevfusion.jobs.context import app_context

    hours = 12 / 3600
    job_id = _train(kitti, {"FAKE_TAO_ITER_SECONDS": "1"}, 30, max_hours=hours)
    state = _watch_container(client, job_id, time.monotonic() + 120)
    s = _wait(job_id)
    job = app_context().store.get(job_id)
    limit_at = (job.started_at or 0) + hours * 3600
    stopped = _stamp(state["FinishedAt"]) if state else None
    return {"outcome": s.verdict.outcome if s.verdict else None, "limit_s": round(hours * 3600, 1),
            "limit_to_stopped_s": round(stopped - limit_at, 2) if stopped else None,
            "note": "includes the grace for an imminent checkpoint (5% of the limit) and the watchdog tick (2 s)"}


def retry(client: Any, kitti: Path) -> dict[str, Any]:
    job_id = _train(kitti, {"FAKE_TAO_KILL_ONCE_AT_EPOCH": "1", "FAKE_TAO_ITER_SECONDS": "0.2"}, 3)
    crashed = _watch_container(client, job_id, time.monotonic() + 120)
    resumed = None
    end = time.monotonic() + 120
    while resumed is None and time.monotonic() < end:
        with contextlib.suppress(Exception):
            state = client.containers.get(f"tao-{job_id}").attrs["State"]
            if state.get("Status") == "running":
                resumed = _stamp(state["StartedAt"])
        time.sleep(0.05)
    s = _wait(job_id)
    gap = resumed - _stamp(crashed["FinishedAt"]) if crashed and resumed else None
    return {"outcome": s.verdict.outcome if s.verdict else None,
            "attempts": len((s.safety or {}).get("attempts", [])) + 1,
            "crash_to_resumed_running_s": round(gap, 2) if gap is not None else None}


def _checkpoints(folder: Path) -> tuple[int, int]:
    files = list(folder.rglob("epoch_*.pth"))
    return len(files), sum(f.stat().st_size for f in files)


def retention(kitti: Path, quick: bool) -> dict[str, Any]:
    from tao_bevfusion.jobs.launch import RunActionInput
    from tao_bevfusion.jobs.retention import CHECKPOINT_BYTES_ESTIMATE
    from tao_bevfusion.service.jobs import get_job
    from tao_bevfusion.service.run import run_action

    os.environ["TAO_BEVFUSION_AUTOML_TICK"] = "0.5"
    epochs = 4 if quick else 6
    out = run_action(RunActionInput(action="train", data_root=str(kitti), gpus=[], overrides={"batch_size": 1},
                                    env={"FAKE_TAO_ITER_SECONDS": "0.1"}, confirm=True, automl_settings={
                                        "automl_algorithm": "asha", "automl_max_recommendations": 6,
                                        "automl_max_concurrent": 2, "automl_max_epochs": epochs,
                                        "automl_reduction_factor": 2}))
    assert out.job_id
    folder = Path(out.review.results_dir if out.review else "")
    peak = 0
    while (s := get_job(out.job_id)).state in ("pending", "running"):
        peak = max(peak, _checkpoints(folder)[0])
        time.sleep(0.3)
    after = _checkpoints(folder)
    freed = (s.safety or {}).get("freed_bytes", 0)
    return {"state": s.state, "trials": 6, "epochs": epochs, "checkpoints_before": peak,
            "checkpoints_after": after[0], "bytes_freed_standin": freed,
            "at_0.5GB_per_checkpoint_GB": {"before": round(peak * CHECKPOINT_BYTES_ESTIMATE / 2**30, 1),
                                           "after": round(after[0] * CHECKPOINT_BYTES_ESTIMATE / 2**30, 1)}}


def measure(client: Any, base: Path, quick: bool) -> dict[str, Any]:
    from tao_bevfusion.jobs.launch import RunActionInput
    from tao_bevfusion.service.jobs import get_job
    from tao_bevfusion.service.run import run_action

    from tests.dockerfix import containers_of
    from tests.standin.image import ensure_image

    kitti = _workspace(base)
    os.environ["TAO_BEVFUSION_IMAGE"] = ensure_image(client)
    conv = run_action(RunActionInput(action="dataset_convert", data_root=str(kitti), gpus=[])).job_id
    assert conv
    while get_job(conv).state in ("pending", "running"):
        time.sleep(0.3)
    try:
        return {"divergence": divergence(client, kitti), "limit": limit(client, kitti),
                "retry": retry(client, kitti), "retention": retention(kitti, quick)}
    finally:
        for c in containers_of(client, kitti.parent):  # this run's containers only
            c.remove(force=True)
