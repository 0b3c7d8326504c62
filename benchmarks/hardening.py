"""Issue 11 figures that need no Docker engine: get_job_logs(grep) over a big log (whole log, newest first)
and with a catastrophic regex, and the size of the largest refusals. One command:

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
    for key, value in results.items():
        print(f"{key:36} {value}")
    out = REPO / "benchmarks" / ("hardening.quick.json" if quick else "hardening.json")
    out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
