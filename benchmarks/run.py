"""Speed and memory targets of the issues, measured (not asserted in tests). One command:

    python3 benchmarks/run.py [--quick]

Prints a table and writes benchmarks/results.json. Sections needing a Docker engine (launch overhead) run
when DOCKER_HOST (or the default socket) answers, and say so otherwise.
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
KITTI_SAMPLE = REPO / "tests" / "data" / "kitti_sample"
RESULTS: dict[str, object] = {}


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def child_peak_mb(code: str, env: dict[str, str]) -> tuple[float, float, str]:
    """Run `code` in a fresh interpreter: (wall seconds, peak RSS MB, stdout)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code + "\nimport resource,sys\nsys.stderr.write('RSS %d' % "
                           "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"], cwd=REPO, env=env,
                          capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    rss = int(proc.stderr.rsplit("RSS ", 1)[1]) / 1024
    return wall, rss, proc.stdout


def bench_build_spec(ws: Path, n: int) -> None:
    from tao_bevfusion.service.specs import build_spec
    from tao_bevfusion.specbuild.build import BuildSpecInput

    kitti = ws / "kitti"
    (ws / "ckpt").mkdir()
    (ws / "ckpt" / "epoch_1.pth").write_text("{}")
    out = {}
    for action in ("dataset_convert", "train", "evaluate", "inference"):
        kw = {"checkpoint": str(ws / "ckpt" / "epoch_1.pth")} if action in ("evaluate", "inference") else {}
        times = []
        for i in range(n):
            t = time.perf_counter()
            over = {"mode": "training"} if action == "dataset_convert" else {"num_epochs": 2 + i % 5}
            build_spec(BuildSpecInput(action=action, data_root=str(kitti), overrides=over, **kw))
            times.append((time.perf_counter() - t) * 1000)
        out[action] = {"p50_ms": round(pct(times, 0.5), 2), "p99_ms": round(pct(times, 0.99), 2), "calls": n}
    RESULTS["build_spec"] = out


def make_tree(root: Path, frames: int) -> None:
    for d in ("ImageSets", "training/calib", "training/image_2", "training/label_2", "training/velodyne"):
        (root / d).mkdir(parents=True, exist_ok=True)
    calib = (KITTI_SAMPLE / "training/calib/000000.txt").read_bytes()
    label = (KITTI_SAMPLE / "training/label_2/000000.txt").read_bytes()
    ids = [f"{i:06d}" for i in range(frames)]
    for fid in ids:
        (root / "training/calib" / f"{fid}.txt").write_bytes(calib)
        (root / "training/label_2" / f"{fid}.txt").write_bytes(label)
        (root / "training/velodyne" / f"{fid}.bin").write_bytes(b"\0" * 1600)
        (root / "training/image_2" / f"{fid}.png").write_bytes(b"\x89PNG")
    (root / "ImageSets/train.txt").write_text("\n".join(ids[: frames * 8 // 10]) + "\n")
    (root / "ImageSets/val.txt").write_text("\n".join(ids[frames * 8 // 10:]) + "\n")
    (root / "ImageSets/test.txt").write_text("")


def bench_check_dataset(ws: Path, frames: int, env: dict[str, str]) -> None:
    root = ws / "big"
    make_tree(root, frames)
    code = (f"import time; from tao_bevfusion.kitti.preflight import check_dataset; t=time.perf_counter(); "
            f"r=check_dataset({str(root)!r}, 'dataset_convert'); print(time.perf_counter()-t, r.ok, r.frames)")
    _, rss, out = child_peak_mb(code, env)
    seconds, ok, *_ = out.split(" ", 2)
    RESULTS["check_dataset"] = {"frames": frames, "seconds": round(float(seconds), 3), "peak_rss_mb": round(rss, 1),
                                "ok": ok == "True"}


def make_big_job(ws: Path, log_bytes: int, status_lines: int) -> tuple[Path, str]:
    from tao_bevfusion.jobs.store import JobStore

    store = JobStore(ws / "home")
    results = ws / "bigrun"
    (results / "train").mkdir(parents=True)
    job = store.create(action="train", backend="local", spec_path="/s.yaml", spec_sha256="x",
                       results_dir=str(results), data_root=str(ws), meta={"num_epochs": 10})
    from tao_bevfusion.backends.local import _proc_start

    # The benchmark process itself stands in for the running job, so the record stays `running`.
    store.update(job.id, state="running", handle=f"pid:{os.getpid()}:{_proc_start(os.getpid())}:/nonexistent")
    log = ws / "home" / "jobs" / job.id / "job.log"
    log.parent.mkdir(parents=True)
    line = (b"\rEpoch(train)  [3][ 120/477]  lr: 1.2000e-04  eta: 5:32:50  time: 0.7499  data_time: 0.0123  "
            b"memory: 20533  loss: 2.3456  loss_heatmap: 1.0  layer_-1_loss_cls: 0.5  matched_ious: 0.1486")
    block = line * 1000 + b"\nsome warning line Error: harmless text in the middle\n"
    with open(log, "wb") as fh:
        written = 0
        while written < log_bytes:
            fh.write(block)
            written += len(block)
        fh.write(b"\nTraceback (most recent call last):\ntorch.cuda.OutOfMemoryError: CUDA out of memory.\n")
    rec = {"mode": "train", "cur_iter": 1, "time_per_iter": "00:00:01", "eta": "5:32:50", "lr": 1e-4, "loss": 2.3,
           "matched_ious": 0.15, "date": "11/24/2026", "time": "18:0:41", "status": "RUNNING", "verbosity": "INFO",
           "graphical": {"loss": 2.3, "matched_ious": 0.15}}
    with open(results / "train" / "status.json", "w") as fh:
        for i in range(status_lines):
            rec["cur_iter"] = i + 1
            fh.write(json.dumps(rec) + "\n")
            if i % 5000 == 4999:
                fh.write(json.dumps({"mode": "val", "epoch": i // 5000 + 1, "AP11": 10.0 + i / 5000, "AP40": 9.0,
                                     "status": "RUNNING"}) + "\n")
    return log, job.id


def bench_summary(ws: Path, log_bytes: int, status_lines: int, env: dict[str, str]) -> None:
    log, job_id = make_big_job(ws, log_bytes, status_lines)
    log.parent.joinpath("exit.json")
    code = (f"import time, json\nfrom tao_bevfusion.jobs.engine import refresh\n"
            f"from tao_bevfusion.present.summary import summarize\n"
            f"from tao_bevfusion.jobs.context import app_context\ns=app_context()\nt=time.perf_counter()\n"
            f"job=refresh(s.store.get({job_id!r}), s)\nsm=summarize(job)\nd=time.perf_counter()-t\n"
            f"print(json.dumps({{'seconds': d, 'summary_bytes': len(sm.model_dump_json()), "
            f"'errors': [e.pattern for e in sm.errors], 'state': job.state}}))")
    wall, rss, out = child_peak_mb(code, env)
    first = json.loads(out)
    t = time.perf_counter()
    subprocess.run(f"tail -n 2000 {log} | grep -E 'error|Error' > /dev/null", shell=True, check=False)
    ref = time.perf_counter() - t
    RESULTS["summary_1gb"] = {"log_bytes": log.stat().st_size, "status_lines": status_lines,
                              "summary_seconds": round(first["seconds"], 3), "process_wall_seconds": round(wall, 3),
                              "peak_rss_mb": round(rss, 1), "summary_bytes": first["summary_bytes"],
                              "reference_tail_grep_seconds": round(ref, 3), "errors_found": first["errors"],
                              "ratio_vs_reference": round(first["seconds"] / ref, 2) if ref else None}


def bench_repoll(ws: Path, env: dict[str, str]) -> None:
    (ws / "repoll").mkdir()
    log, job_id = make_big_job(ws / "repoll", 64 * 1024 * 1024, 20000)
    env = {**env, "TAO_BEVFUSION_HOME": str(ws / "repoll" / "home")}
    code = (f"import time, json\nfrom tao_bevfusion.jobs.engine import refresh\n"
            f"from tao_bevfusion.jobs.context import app_context\n"
            f"s=app_context()\nrefresh(s.store.get({job_id!r}), s)\n"
            f"a=s.store.get({job_id!r}).cursor\n"
            f"open({str(log)!r},'ab').write(b'Epoch(train) [4][1/9] loss: 1.0\\n'*1000)\n"
            f"t=time.perf_counter()\nrefresh(s.store.get({job_id!r}), s)\nd=time.perf_counter()-t\n"
            f"b=s.store.get({job_id!r}).cursor\nprint(json.dumps({{'seconds': d, 'log_bytes_read': "
            f"b.log_offset-a.log_offset}}))")
    _, _, out = child_peak_mb(code, env)
    RESULTS["repoll_append_only"] = json.loads(out)


def bench_mcp(ws: Path, env: dict[str, str]) -> None:
    import anyio
    from mcp import Client, StdioServerParameters

    ours = StdioServerParameters(command=sys.executable, args=["-m", "tao_bevfusion.cli", "serve"],
                                 env=env, cwd=str(REPO))
    minimal = StdioServerParameters(command=sys.executable, args=[str(REPO / "benchmarks" / "minimal_server.py")],
                                    env=env, cwd=str(REPO))

    async def cold(params: StdioServerParameters) -> float:
        t = time.perf_counter()
        async with Client(params) as c:
            await c.list_tools()
        return time.perf_counter() - t

    colds, baseline = [], []
    for _ in range(5):  # interleaved, so machine load hits both alike
        colds.append(anyio.run(cold, ours))
        baseline.append(anyio.run(cold, minimal))
    _, _, out = child_peak_mb("import sys, tao_bevfusion.server; print('docker' in sys.modules)", env)
    RESULTS["mcp_cold_start"] = {"p50_s": round(statistics.median(colds), 3), "max_s": round(max(colds), 3),
                                 "minimal_server_p50_s": round(statistics.median(baseline), 3),
                                 "ratio_vs_minimal": round(statistics.median(colds) / statistics.median(baseline), 2),
                                 "docker_sdk_imported_at_start": out.strip() == "True"}


def bench_tools(ws: Path, n: int) -> None:
    import anyio
    from mcp import Client
    from tao_bevfusion.server import mcp

    kitti = ws / "kitti"
    jobs_dir = ws / "tools-run"
    standin = REPO / "tests/standin/bevfusion_standin.py"
    os.environ["TAO_BEVFUSION_LOCAL_CLI"] = json.dumps([sys.executable, str(standin)])

    async def go() -> dict:
        sizes: dict[str, int] = {}
        lat: dict[str, list[float]] = {}
        async with Client(mcp) as c:
            async def timed(name: str, args: dict, repeat: int = 1) -> dict:
                result = None
                for _ in range(repeat):
                    t = time.perf_counter()
                    result = await c.call_tool(name, args)
                    lat.setdefault(name, []).append((time.perf_counter() - t) * 1000)
                assert result is not None and not result.is_error, (name, result.content)
                sizes[name] = max(sizes.get(name, 0), len(result.content[0].text),
                                  len(json.dumps(result.structured_content)))
                return result.structured_content or {}

            await timed("route_request", {"request": "train BEVFusion, no HPO"}, n)
            await timed("resolve_automl_policy", {"action": "train", "request": "plain training"}, n)
            await timed("check_dataset", {"data_root": str(kitti), "action": "dataset_convert"}, n)
            common = {"data_root": str(kitti), "backend": "local"}
            conv = await timed("run_action", {"action": "dataset_convert", **common, "wait_seconds": 10})
            train = await timed("run_action", {"action": "train", **common, "automl_policy": "off",
                                               "results_dir": str(jobs_dir / "t"),
                                               "overrides": {"num_epochs": 2, "batch_size": 1}, "wait_seconds": 20})
            await timed("build_spec", {"action": "train", **common, "overrides": {"num_epochs": 2}})
            await timed("resolve_parent_checkpoint", {"parent_job_id": train["job_id"]}, n)
            await timed("get_job", {"job_id": train["job_id"]}, n)
            await timed("get_job_logs", {"job_id": train["job_id"], "tail_lines": 50}, n)
            await timed("list_jobs", {}, n)
            ev = await timed("run_action", {"action": "evaluate", **common, "parent_job_id": train["job_id"],
                                            "wait_seconds": 10})
            await timed("get_job", {"job_id": ev["job_id"]})
            await timed("cancel_job", {"job_id": conv["job_id"]})
        return {"latency_ms": {k: {"p50": round(pct(v, 0.5), 2), "p99": round(pct(v, 0.99), 2), "calls": len(v)}
                               for k, v in lat.items() if len(v) > 1},
                "max_result_chars": sizes}

    RESULTS["tools"] = anyio.run(go)


def bench_launch(ws: Path) -> None:
    try:
        import docker

        client = docker.from_env(timeout=10)
        client.ping()
    except Exception as exc:
        RESULTS["launch_overhead"] = f"skipped: no Docker engine reachable ({exc.__class__.__name__})"
        return
    from tao_bevfusion.jobs.launch import RunActionInput
    from tao_bevfusion.service.jobs import cancel_job
    from tao_bevfusion.service.run import run_action

    from tests.standin.image import ensure_image

    image = ensure_image(client)
    os.environ["TAO_BEVFUSION_IMAGE"] = image
    hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)[1]
    os.environ["TAO_BEVFUSION_MEMLOCK"] = str(hard if hard != resource.RLIM_INFINITY else -1)
    ours, plain = [], []
    for i in range(11):
        t = time.perf_counter()
        r = run_action(RunActionInput(action="train", data_root=str(ws / "kitti"), automl_policy="off", gpus=[],
                                      results_dir=str(ws / "launch" / str(i)), overrides={"num_epochs": 1},
                                      env={"FAKE_TAO_ITER_SECONDS": "5"}))
        ours.append(time.perf_counter() - t)
        cancel_job(r.job_id, force=True)
        t = time.perf_counter()
        c = client.containers.run(image, ["sleep", "5"], detach=True, network_mode="none")
        plain.append(time.perf_counter() - t)
        c.remove(force=True)
    RESULTS["launch_overhead"] = {"run_action_to_running_s_p50": round(statistics.median(ours), 3),
                                  "plain_docker_run_s_p50": round(statistics.median(plain), 3),
                                  "ratio": round(statistics.median(ours) / statistics.median(plain), 2),
                                  "note": "run_action includes build_spec, preflight (dataset check, image, disk), "
                                          "and the SQLite record"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes (CI smoke)")
    args = parser.parse_args()
    ws = Path(tempfile.mkdtemp(prefix="tao-bench."))
    try:
        shutil.copytree(KITTI_SAMPLE, ws / "kitti")
        for p in ws.rglob("*"):
            p.chmod(0o755 if p.is_dir() else 0o644)
        os.environ.update(TAO_BEVFUSION_HOME=str(ws / "home"), TAO_BEVFUSION_ROOTS=str(ws))
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        bench_build_spec(ws, 100 if args.quick else 1000)
        bench_check_dataset(ws, 1000 if args.quick else 10000, env)
        bench_summary(ws, (64 if args.quick else 1024) * 1024 * 1024, 10000 if args.quick else 100000, env)
        bench_repoll(ws, env)
        bench_mcp(ws, env)
        bench_tools(ws, 20 if args.quick else 100)
        bench_launch(ws)
    finally:
        shutil.rmtree(ws, ignore_errors=True)
    text = json.dumps(RESULTS, indent=2)
    print(text)
    (REPO / "benchmarks" / ("results.quick.json" if args.quick else "results.json")).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
