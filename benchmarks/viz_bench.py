"""Picture budget on the real KITTI sample: BEV render time and PNG size per frame, camera picture,
a contact sheet of 50 frames (the sample's frames repeated), list_jobs with metrics over 1,000 recorded jobs
(p50, sorted by time and by best AP11), and the routing score on the held-out phrasings.
Goal: BEV < 0.5 s and < 300 KB.

    python3 benchmarks/viz_bench.py [--quick] [--data DIR] [--examples DIR]

--examples writes bev_000000.png and camera_000000.png (GT plus stand-in predictions) into DIR.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tao_bevfusion.evidence.predictions import read_frame, summarize
from tao_bevfusion.present.viz.bev import contact_sheet, render_bev
from tao_bevfusion.present.viz.camera import render_camera
from tao_bevfusion.present.viz.scene import Scene, load_scene

from tests.conftest import KITTI_SAMPLE
from tests.standin.bevfusion_standin import _standin_preds


def scenes(root: Path, preds: Path) -> list[Scene]:
    frames = sorted(p.stem for p in (root / "training" / "velodyne").glob("*.bin"))
    for fid in frames:
        (preds / f"{fid}.json").write_text(json.dumps(_standin_preds(str(root / "training"), fid)))
    return [load_scene(root, fid, read_frame(preds / f"{fid}.json")) for fid in frames]


def timed(fn, repeat: int) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="1 repeat, 10-frame sheet")
    ap.add_argument("--data", type=Path, default=KITTI_SAMPLE)
    ap.add_argument("--examples", type=Path)
    args = ap.parse_args()
    repeat, sheet_n = (1, 50) if args.quick else (5, 50)
    with tempfile.TemporaryDirectory() as tmp:
        preds = Path(tmp) / "preds"
        preds.mkdir()
        sc = scenes(args.data, preds)
        render_bev(sc[0])  # first call pays the matplotlib import
        result: dict[str, object] = {"frames": len(sc), "repeat": repeat}
        for s in sc:
            sec, bev = timed(lambda s=s: render_bev(s), repeat)
            csec, cam = timed(lambda s=s: render_camera(s), repeat)
            result[f"bev_{s.frame}"] = {"seconds": round(sec, 3), "kb": round(len(bev.png) / 1024, 1),
                                        "px": [bev.width, bev.height]}
            result[f"camera_{s.frame}"] = {"seconds": round(csec, 3), "kb": round(len(cam.png) / 1024, 1)}
            if args.examples and s.frame == "000000":
                args.examples.mkdir(parents=True, exist_ok=True)
                (args.examples / "bev_000000.png").write_bytes(bev.png)
                (args.examples / "camera_000000.png").write_bytes(cam.png)
        many = (sc * sheet_n)[:sheet_n]
        sec, png = timed(lambda: contact_sheet(many), 1)
        result[f"contact_sheet_{sheet_n}"] = {"seconds": round(sec, 3), "kb": round(len(png) / 1024, 1)}
        sec, _ = timed(lambda: summarize(preds), repeat)
        result["summary_seconds"] = round(sec, 4)
    result["list_jobs_1000"] = list_jobs_bench(3 if args.quick else 10)
    result["routing_heldout"] = routing_heldout()
    print(json.dumps(result, indent=1))
    return 0


def list_jobs_bench(repeat: int) -> dict[str, float]:
    """p50 of list_jobs (limit 100) over 1,000 finished train jobs with metrics and hyperparameters."""
    import os

    from tao_bevfusion.core.settings import Settings
    from tao_bevfusion.jobs.context import AppContext
    from tao_bevfusion.service.jobs import list_jobs

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TAO_BEVFUSION_HOME"] = tmp
        ctx = AppContext(Settings.from_env())
        for i in range(1000):
            job = ctx.store.create(action="train", backend="local", spec_path=f"{tmp}/s{i}.yaml", spec_sha256="x",
                                   results_dir=f"{tmp}/r{i}", data_root=tmp,
                                   meta={"num_epochs": 10, "hyper": {"epochs": 10, "lr": 2e-4, "batch_size": 2}})
            ctx.store.update(job.id, state="succeeded", verdict={"outcome": "succeeded", "reason": "bench"},
                             metrics={"best_AP11": float(i % 97), "best_epoch": 1 + i % 10}, started_at=time.time(),
                             finished_at=time.time() + 60)
        out = {}
        for sort in ("time", "best_AP11"):
            sec, _ = timed(lambda sort=sort: list_jobs(limit=100, sort=sort, ctx=ctx), repeat)
            out[f"p50_seconds_sort_{sort}"] = round(sec, 4)
        return out


def routing_heldout() -> dict[str, object]:
    from tests.test_policy_and_routing import heldout_score

    passed, total, misses = heldout_score()
    return {"passed": passed, "total": total, "score": round(passed / total, 3), "misses": misses}


if __name__ == "__main__":
    sys.exit(main())
