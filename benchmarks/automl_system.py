"""The AutoML study as a system (issue 9's numbers), used by automl_bench.py:

- launch_overhead: ask + build_spec + the launch (run_action dry run = plan + preflight, and the trial's job
  record) at trial 1 and at trial 100 of a simulated study (goal < 1 s at 100);
- get_job_study: get_job(study) latency with 100 trials; list_jobs: p50 with 10,000 jobs in the store (< 50 ms);
- real_study (needs a Docker engine and builds the stand-in): the gap from a trial's end to the next trial's
  container running (goal < 5 s) and the CPU of the driver while a trial runs (goal < 1 % of a core).
"""

import json
import os
import resource
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
KITTI_SAMPLE = REPO / "tests" / "data" / "kitti_sample"
LR, WD = "train.optimizer.lr", "train.optimizer.weight_decay"


def _workspace(base: Path) -> Path:
    (base / "home").mkdir(parents=True, exist_ok=True)
    os.environ.update(TAO_BEVFUSION_HOME=str(base / "home"), TAO_BEVFUSION_ROOTS=str(base))
    kitti = base / "kitti"
    if not kitti.exists():
        shutil.copytree(KITTI_SAMPLE, kitti)
    return kitti


def _study_inputs(kitti: Path, trials: int, **settings: Any) -> dict[str, Any]:
    return {"action": "train", "data_root": str(kitti), "gpus": [], "overrides": {"batch_size": 1},
            "automl_settings": {"automl_max_recommendations": trials, "automl_max_concurrent": 1,
                                "automl_max_epochs": 2, "automl_hyperparameters": [LR, WD], **settings}}


def launch_overhead(base: Path, trials: int) -> dict[str, Any]:
    from tao_bevfusion.jobs.context import app_context
    from tao_bevfusion.jobs.launch import RunActionInput
    from tao_bevfusion.jobs.store import new_job_id
    from tao_bevfusion.service.run import run_action
    from tao_bevfusion.service.specs import build_spec
    from tao_bevfusion.specbuild.build import BuildSpecInput
    from tao_bevfusion.studies import study as S
    from tao_bevfusion.studies.plan import make_plan

    kitti = _workspace(base)
    ctx = app_context()
    folder = base / "home" / "runs" / "study-bench"
    plan = make_plan(RunActionInput(**_study_inputs(kitti, trials)), "jbench", folder, str(kitti), None)
    cfg = S.StudyConfig(settings=plan.settings, space=plan.space, trials=plan.trials)
    study = S.create_study(folder, "jbench", cfg)
    per_trial: list[float] = []
    while (start := time.perf_counter()) and (ticket := S.ask_next(study, cfg)) is not None:
        fields = plan.trial_input(ticket.number, ticket.params, 0)
        build_spec(BuildSpecInput.model_validate({k: v for k, v in fields.items() if k in BuildSpecInput.model_fields}),
                   ctx)
        run_action(RunActionInput.model_validate({**fields, "dry_run": True}), ctx)
        job_id = new_job_id()
        ctx.store.create(job_id=job_id, action="train", backend="docker", spec_path="-", spec_sha256="-",
                         results_dir=fields["results_dir"] + "-" + job_id, data_root=str(kitti), owner_id="jbench")
        S.set_job(study, ticket.number, job_id)
        per_trial.append(time.perf_counter() - start)
        for epoch in (1, 2):
            S.report(study, ticket.number, epoch, 10.0 + epoch + 1e4 * float(ticket.params[LR]))
        S.finish(study, ticket.number, "complete")
    return {"trials": trials, "trial_1_s": round(per_trial[0], 3), "trial_last_s": round(per_trial[-1], 3),
            "median_s": round(statistics.median(per_trial), 3)}


def _fake_study(ctx: Any, kitti: Path, trials: int) -> str:
    """A finished study of `trials` trials in the store, with its plan and snapshot."""
    from tao_bevfusion.jobs.launch import RunActionInput
    from tao_bevfusion.jobs.store import new_job_id
    from tao_bevfusion.studies.plan import SNAPSHOT, make_plan

    sid = new_job_id()
    folder = ctx.settings.home / "runs" / f"study-{sid}"
    plan = make_plan(RunActionInput(**_study_inputs(kitti, trials)), sid, folder, str(kitti), None)
    plan.save()
    ctx.store.create(job_id=sid, kind="study", action="train", backend="docker", spec_path="-", spec_sha256="-",
                     results_dir=str(folder), data_root=str(kitti))
    rows = []
    for n in range(trials):
        jid = new_job_id()
        ctx.store.create(job_id=jid, action="train", backend="docker", spec_path="-", spec_sha256="-",
                         results_dir=str(folder / f"t{n}"), data_root=str(kitti), owner_id=sid)
        ctx.store.update(jid, state="succeeded", verdict={"outcome": "succeeded", "reason": "bench"})
        rows.append({"number": n, "job_id": jid, "state": "complete", "params": {LR: 1e-4 + n * 1e-6, WD: 0.01},
                     "baseline": n == 0, "value": 20.0 + n / 100, "epoch": 2, "started": 0.0, "ended": 60.0})
    best = {"trial": trials - 1, "job_id": rows[-1]["job_id"], "value": rows[-1]["value"], "epoch": 2,
            "params": rows[-1]["params"], "checkpoint": str(folder / "x.pth")}
    (folder / SNAPSHOT).write_text(json.dumps({"trials": rows, "best": best, "stopped": None}))
    ctx.store.update(sid, state="succeeded", started_at=time.time() - 100, verdict={"outcome": "succeeded",
                                                                                    "reason": "bench"})
    return sid


def store_latency(base: Path, jobs: int) -> dict[str, Any]:
    from tao_bevfusion.jobs.context import app_context
    from tao_bevfusion.jobs.store import new_job_id
    from tao_bevfusion.service.jobs import get_job, list_jobs

    kitti = _workspace(base)
    ctx = app_context()
    sid = _fake_study(ctx, kitti, 100)
    study_ms = []
    for _ in range(20):
        t = time.perf_counter()
        s = get_job(sid, ctx)
        study_ms.append((time.perf_counter() - t) * 1000)
    with ctx.store._conn() as conn:  # bulk insert: 10,000 create() calls would measure the inserts instead
        now = time.time()
        rows = [(new_job_id(), "train", "docker", "succeeded", "-", "-", f"/r/{i}", "/d", now + i, now + i)
                for i in range(jobs)]
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO jobs (id, action, backend, state, spec_path, spec_sha256, results_dir, "
                         "data_root, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
        conn.execute("COMMIT")
    list_ms = []
    for _ in range(50):
        t = time.perf_counter()
        list_jobs(limit=20, ctx=ctx)
        list_ms.append((time.perf_counter() - t) * 1000)
    return {"get_job_study_100_trials_p50_ms": round(statistics.median(study_ms), 2),
            "digest_bytes": len(s.digest.encode()), "result_bytes": len(s.model_dump_json()),
            "list_jobs_jobs": jobs + 101, "list_jobs_p50_ms": round(statistics.median(list_ms), 2),
            "list_jobs_p90_ms": round(sorted(list_ms)[int(0.9 * len(list_ms))], 2)}


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def real_study(base: Path) -> dict[str, Any]:
    """Two trials, one at a time, on the stand-in; the driver at its default tick."""
    import docker
    from tao_bevfusion.jobs.context import app_context
    from tao_bevfusion.jobs.launch import RunActionInput
    from tao_bevfusion.service.jobs import get_job
    from tao_bevfusion.service.run import run_action

    from tests.dockerfix import containers_of
    from tests.standin.image import ensure_image

    client = docker.from_env()
    kitti = _workspace(base)
    os.environ["TAO_BEVFUSION_IMAGE"] = ensure_image(client)
    os.environ["TAO_BEVFUSION_MEMLOCK"] = str(resource.getrlimit(resource.RLIMIT_MEMLOCK)[1])
    os.environ.pop("TAO_BEVFUSION_AUTOML_TICK", None)
    ctx = app_context()
    conv = run_action(RunActionInput(action="dataset_convert", data_root=str(kitti), gpus=[]), ctx).job_id
    while get_job(conv, ctx).state == "running":
        time.sleep(0.5)
    inputs = {**_study_inputs(kitti, 2), "env": {"FAKE_TAO_ITER_SECONDS": "4"}}
    sid = run_action(RunActionInput(**inputs, confirm=True), ctx).job_id
    assert sid
    cpu: list[float] = []
    while (s := get_job(sid, ctx)).state == "running":
        pid = s.study.driver.get("pid") if s.study else None
        if pid and not cpu and s.study and s.study.progress.running:
            cpu = [time.monotonic(), _cpu_seconds(pid)]
            time.sleep(6)
            cpu = [time.monotonic() - cpu[0], _cpu_seconds(pid) - cpu[1]]
        time.sleep(0.5)
    trials = sorted(ctx.store.query(owner_id=sid, limit=10), key=lambda j: j.created_at)
    gap = None
    if len(trials) == 2 and trials[1].started_at:
        ended = (Path(trials[0].results_dir) / "train" / "status.json").stat().st_mtime  # its last line
        gap = trials[1].started_at - ended  # started_at: the engine has started the container
    for c in containers_of(client, base):  # this run's containers only
        c.remove(force=True)
    return {"state": s.state, "end_to_next_container_s": round(gap, 2) if gap is not None else None,
            "driver_cpu_percent": round(100 * cpu[1] / cpu[0], 2) if len(cpu) == 2 else None}
