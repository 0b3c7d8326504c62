"""Issue 11 and 17 figures that need no Docker engine: get_job_logs(grep) over a big log (whole log, newest
first) and with a catastrophic regex; the bounded readers of issue 17: one 64 MB log line (the docker log
sync's entry handling, the first get_job's scan, grep), a 40 MB status.json record, a picture of a frame with
8,000 boxes. One command:

    python3 benchmarks/hardening.py [--quick]

Prints a table and writes benchmarks/hardening.json (hardening.quick.json with --quick).
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _finished_job(home: Path, log_mb: int) -> str:
    from tao_bevfusion.jobs.context import app_context

    ctx = app_context()
    job = ctx.store.create(action="train", backend="local", spec_path=str(home / "s.yaml"), spec_sha256="0",
                           results_dir=str(home / "runs" / "r"), data_root=str(home))
    ctx.store.update(job.id, state="succeeded", started_at=time.time(), finished_at=time.time())
    log = job.files(home).log
    log.parent.mkdir(parents=True, exist_ok=True)
    line = b"Epoch(train) [1][ 10/100] lr: 1.0e-04 loss: 1.2345 an ordinary long training log line\n"
    with open(log, "wb") as fh:
        fh.write(line * (log_mb * (1 << 20) // len(line)))
        fh.write(b"a" * 27 + b"!\nTraceback (most recent call last)\nRuntimeError: the end of the log\n")
    return job.id


def _timed(fn: object, *args: object, **kw: object) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn(*args, **kw)  # type: ignore[operator]
    return time.perf_counter() - start, out


def _one_long_line_job(home: Path, mb: int) -> str:
    """A finished job whose log was synced from engine frames holding one `mb` MB line (16 KB entries)."""
    import io

    from tao_bevfusion.backends.logsync import LogWindow, RecordCap

    job_id = _finished_job(home, 1)
    from tao_bevfusion.jobs.context import app_context

    log = app_context().store.get(job_id).files(home).log
    stamp = b"2026-12-01T10:00:00.5Z "
    window, out = LogWindow(0, set(), RecordCap(0)), io.BytesIO()
    entry = b"z" * (16 * 1024)
    start = time.perf_counter()
    for _ in range(mb * 64):
        window.append(out, stamp + entry)
    window.append(out, stamp + b" NEEDLE\n")
    _BENCH[f"sync_{mb}MB_line_entries_s"] = round(time.perf_counter() - start, 3)
    with open(log, "ab") as fh:
        fh.write(out.getvalue())
        for _ in range(mb):  # and the same line written straight into the file (anyone with the user's files)
            fh.write(b"z" * (1 << 20))
        fh.write(b" NEEDLE\n")
    return job_id


_BENCH: dict[str, object] = {}


def _bounded_readers(home: Path, quick: bool) -> dict[str, object]:
    from tao_bevfusion.evidence.models import Cursor, Findings, RunProgress
    from tao_bevfusion.evidence.scan import scan_log
    from tao_bevfusion.jobs.context import app_context
    from tao_bevfusion.jobs.logs import get_job_logs

    mb = 16 if quick else 64
    job_id = _one_long_line_job(home, mb)
    log = app_context().store.get(job_id).files(home).log
    secs, _ = _timed(scan_log, log, Cursor(), Findings(), RunProgress(), final=True)
    _BENCH[f"first_scan_{mb}MB_line_s"] = round(secs, 3)
    secs, page = _timed(get_job_logs, job_id, grep="NEEDLE")
    _BENCH[f"grep_{mb}MB_line_s"] = round(secs, 3)
    _BENCH["grep_line_found"] = "NEEDLE" in page.text  # type: ignore[attr-defined]
    secs, page = _timed(get_job_logs, job_id, grep="(z+z+)+y", offset=0)
    _BENCH[f"grep_backtracking_{mb}MB_line_s"] = round(secs, 3)
    _BENCH["status_40MB_record"] = _status_record(home)
    _BENCH["picture_8000_boxes"] = _picture(home)
    _BENCH["check_dataset_dev_zero_label"] = _dev_zero_label(home)
    return dict(_BENCH)


def _status_record(home: Path) -> dict[str, object]:
    from tao_bevfusion.evidence.status import read_status

    path = home / "status.json"
    with open(path, "wb") as fh:
        fh.write(b'{"status": "STARTED"}\n{"mode": "val", "epoch": 1, "AP11": 10.0}\n')
        fh.write(b'{"status": "RUNNING", "message": "' + b"y" * (40 << 20) + b'"}\n')
        fh.write(b'{"mode": "val", "epoch": 2, "AP11": 20.0}\n{"message": "Train finished successfully."}\n')
    secs, chunk = _timed(read_status, path, 0, to_end=True)
    epochs = [r.epoch for r in chunk.records if r.is_validation]  # type: ignore[attr-defined]
    return {"read_s": round(secs, 3), "epochs_seen": epochs, "overlong": chunk.overlong}  # type: ignore[attr-defined]


def _picture(home: Path) -> dict[str, object]:
    import resource

    from tao_bevfusion.evidence.predictions import read_frame
    from tao_bevfusion.present.viz.bev import render_bev
    from tao_bevfusion.present.viz.scene import load_scene

    n = 8000
    rows = [[5.0 + (i % 80) * 0.5, -20.0 + (i // 80) * 0.4, -1.6, 0.6, 0.5, 1.7, 0, 0, 0.1 * i] for i in range(n)]
    path = home / "preds" / "000000.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"labels_3d": [0] * n, "scores_3d": [0.9] * n, "bboxes_3d": rows}))
    render_bev(load_scene(None, "000000", read_frame(path)))  # warm: matplotlib's first figure costs seconds
    start = time.perf_counter()
    png = render_bev(load_scene(None, "000000", read_frame(path)))
    secs = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"render_s": round(secs, 3), "process_peak_rss_MB": round(peak, 1), "png_bytes": len(png.png)}


def _dev_zero_label(home: Path) -> dict[str, object]:
    """check_dataset (the CLI, a fresh process with a 1 GB address-space cap) on the sample with one label
    file linked to /dev/zero: wall time and peak memory of the process."""
    import resource
    import shutil
    import subprocess

    root = home.parent / "kitti"
    shutil.copytree(REPO / "tests" / "data" / "kitti_sample", root)
    label = root / "training" / "label_2" / "000000.txt"
    label.unlink()
    os.symlink("/dev/zero", label)

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "tao_bevfusion.cli", "check-dataset", "--data-root", str(root),
                           "--action", "dataset_convert", "--json"], capture_output=True, text=True,
                          preexec_fn=cap, env=dict(os.environ), timeout=120)
    secs = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"wall_s": round(secs, 3), "rc": proc.returncode, "peak_rss_MB": round(peak / 1024, 1),
            "refused": '"ok": false' in proc.stdout}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    quick = parser.parse_args().quick
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        os.environ.update(TAO_BEVFUSION_HOME=str(home), TAO_BEVFUSION_ROOTS=tmp)
        from tao_bevfusion.jobs.logs import get_job_logs

        size_mb = 8 if quick else 64
        job_id = _finished_job(home, size_mb)
        secs, page = _timed(get_job_logs, job_id, grep="Traceback|RuntimeError")
        results["grep_found_end_s"] = round(secs, 3)
        results["grep_found_end"] = "the end of the log" in page.text  # type: ignore[attr-defined]
        secs, page = _timed(get_job_logs, job_id, grep="nothing-matches-this")
        results[f"grep_whole_{size_mb}MB_log_s"] = round(secs, 3)
        results["grep_whole_hint"] = page.hint  # type: ignore[attr-defined]
        secs, page = _timed(get_job_logs, job_id, grep="(a+)+$")
        results["grep_catastrophic_s"] = round(secs, 3)
        secs, page = _timed(get_job_logs, job_id, grep="(x+x+)+y")
        results["grep_backtracking_whole_log_s"] = round(secs, 3)
        results["grep_backtracking_hint"] = page.hint  # type: ignore[attr-defined]
        results.update(_bounded_readers(home, quick))
    for key, value in results.items():
        print(f"{key:36} {value}")
    out = REPO / "benchmarks" / ("hardening.quick.json" if quick else "hardening.json")
    out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
