"""AutoML studies end to end against the real Docker engine and the stand-in (gpus=[]): the review gate,
a study through the MCP client (started by a stdio server that then exits), pruning, failures, a driver
SIGKILLed mid-study with a trial container removed, and cancel."""

import json
import os
import re
import signal
import sys
import time
from pathlib import Path

import anyio
import docker
import pytest
import yaml
from mcp import Client, StdioServerParameters
from tao_bevfusion.api import tool
from tao_bevfusion.core.errors import InputError
from tao_bevfusion.jobs.context import app_context
from tao_bevfusion.jobs.launch import RunActionInput
from tao_bevfusion.service.jobs import cancel_job, get_job, list_jobs
from tao_bevfusion.service.run import run_action
from tao_bevfusion.service.specs import resolve_parent_checkpoint

from tests.conftest import REPO, SERVE_ARGS
from tests.standin.bevfusion_standin import hp_factor

pytestmark = pytest.mark.docker
LR, WD = "train.optimizer.lr", "train.optimizer.weight_decay"
LABEL_JOB = "tao-bevfusion.job"


def settings(**kw):
    return {"automl_max_recommendations": 4, "automl_max_concurrent": 2, "automl_max_epochs": 2,
            "automl_hyperparameters": [LR, WD], **kw}


def study_args(root: Path, iter_seconds: float = 0.2, **kw):
    env = {"FAKE_TAO_ITER_SECONDS": str(iter_seconds), **kw.pop("env", {})}
    return {"action": "train", "data_root": str(root), "gpus": [], "env": env, "overrides": {"batch_size": 1},
            "automl_settings": settings(**kw.pop("automl", {})), **kw}


def until(fn, timeout: float, what: str, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def finished(study_id: str, timeout: float = 120):
    return until(lambda: (s := get_job(study_id)).state not in ("pending", "running") and s, timeout,
                 f"study {study_id}")


def running_trials(engine: docker.DockerClient, study_id: str) -> list:
    ids = {j.id for j in app_context().store.query(owner_id=study_id, limit=100)}
    return [c for c in engine.containers.list(filters={"label": "tao-bevfusion.plugin=tao-bevfusion"})
            if c.labels.get(LABEL_JOB) in ids]


def test_review_launches_nothing_and_bad_input_is_named(study_kitti: Path, engine: docker.DockerClient):
    args = study_args(study_kitti)
    r = run_action(RunActionInput(**args))
    assert r.state == "review" and r.job_id is None and r.review is not None
    assert [p.key for p in r.review.search_space] == [LR, WD] and r.review.budget.trials == 4
    assert r.review.confirm_call["arguments"]["confirm"] is True and r.review.concurrency.concurrent == 2
    assert "tao-skill-bank:tao-run-automl" in r.routing["route"] and "itself" in r.routing["reason"]
    dry = run_action(RunActionInput(**args, dry_run=True, confirm=True))
    assert dry.state == "review" and dry.job_id is None
    assert list_jobs(action="train") == [] and running_trials(engine, "j0000000000000000") == []
    with pytest.raises(InputError, match=r"automl_settings\.automl_algorithm"):
        run_action(RunActionInput(**study_args(study_kitti, automl={"automl_algorithm": "bohb"})))
    with pytest.raises(InputError, match=r"custom_param_ranges|bound"):
        bad = {"custom_param_ranges": {LR: {"min": -1, "max": 2}}}
        run_action(RunActionInput(**study_args(study_kitti, automl=bad)))
    with pytest.raises(InputError, match="confirm"):
        run_action(RunActionInput(**{**args, "automl_policy": "off"}, confirm=True))
    with pytest.raises(InputError, match="automl_max_concurrent"):
        run_action(RunActionInput(**{**study_args(study_kitti, automl={"automl_max_concurrent": 3}), "gpus": ["0"]}))


def test_study_through_mcp_survives_the_server_and_evaluates_its_best(study_kitti: Path, docker_ws: Path):
    args = study_args(study_kitti)
    env = {k: v for k, v in os.environ.items() if k.startswith(("TAO_BEVFUSION_", "PATH", "HOME", "DOCKER_"))}
    params = StdioServerParameters(command=sys.executable, args=SERVE_ARGS, env=env, cwd=str(REPO))

    async def start() -> str:
        async with Client(params) as c:
            review = await c.call_tool("run_action", args)
            assert review.structured_content["state"] == "review" and "confirm=true" in review.content[0].text
            started = await c.call_tool("run_action", review.structured_content["review"]["confirm_call"]["arguments"])
            assert started.structured_content["state"] == "running", started.content[0].text
            return started.structured_content["job_id"]

    t0 = time.monotonic()
    study_id = anyio.run(start)  # the stdio server has exited here; the study goes on without it
    assert time.monotonic() - t0 < 30

    from tao_bevfusion.server import mcp

    async def follow() -> None:
        async with Client(mcp) as c:
            while True:
                r = await c.call_tool("get_job", {"job_id": study_id})
                if r.structured_content["state"] != "running":
                    break
                await anyio.sleep(1)
            s = r.structured_content
            assert s["state"] == "succeeded" and s["kind"] == "study", r.content[0].text
            assert len(r.content[0].text.encode()) < 8192 and len(json.dumps(s)) < 8192
            st = s["study"]
            assert st["progress"] == {"completed": 4, "pruned": 0, "failed": 0, "running": 0, "total": 4}
            assert st["trials"][0]["baseline"] and st["trials"][0]["params"] == {LR: 2e-4, WD: 0.01}
            scores = {t["number"]: hp_factor(t["params"][LR], t["params"][WD]) for t in st["trials"]}
            assert st["best"]["trial"] == max(scores, key=lambda n: scores[n])  # the stand-in's known optimum
            assert st["best"]["value"] == max(t["value"] for t in st["trials"]) and st["best"]["epoch"] == 2
            assert st["best"]["checkpoint"].endswith("/train/epoch_2.pth") and Path(st["best"]["checkpoint"]).is_file()
            rec = json.loads(Path(st["best_rec"]).read_text())
            assert rec["best"]["rec_id"] == f"trial_{st['best']['trial']}" and rec["best"]["checkpoint_epoch"] == 2
            img = await c.call_tool("get_job", {"job_id": study_id, "include_curve": True})
            assert any(getattr(part, "type", "") == "image" for part in img.content)
            listed = (await c.call_tool("list_jobs", {"action": "train", "limit": 20})).structured_content["jobs"]
            trials = [j for j in listed if j["owner_id"] == study_id]
            assert len(trials) == 4 and all(j["state"] == "succeeded" for j in trials)
            one = await c.call_tool("get_job", {"job_id": st["best"]["job_id"]})
            assert one.structured_content["kind"] == "run" and one.structured_content["state"] == "succeeded"
            with pytest.raises(InputError, match="AutoML study"):
                resolve_parent_checkpoint(parent_job_id=study_id, choose="latest")  # resume/latest: one job only
            choice = resolve_parent_checkpoint(parent_job_id=study_id)
            assert choice.path == st["best"]["checkpoint"] and "never latest" in choice.method
            ev = await c.call_tool("run_action", {"action": "evaluate", "data_root": str(study_kitti),
                                                  "parent_job_id": study_id, "gpus": []})
            assert not ev.is_error, ev.content[0].text
            eval_id = ev.structured_content["job_id"]
            while (e := await c.call_tool("get_job", {"job_id": eval_id})).structured_content["state"] == "running":
                await anyio.sleep(0.5)
            assert e.structured_content["state"] == "succeeded", e.content[0].text
            assert e.structured_content["artifacts"]["parent_checkpoint"]["epoch"] == 2
    anyio.run(follow)
    png = tool("get_job").images(tool("get_job").input.model_validate({"job_id": study_id, "include_curve": True}),
                                 get_job(study_id), app_context())
    assert png and png[0][1][:8] == b"\x89PNG\r\n\x1a\n"


def test_asha_prunes_and_stops_the_container(study_kitti: Path, engine: docker.DockerClient):
    # Every non-baseline lr lies below the baseline's, so each trial loses to it at the epoch-2 rung.
    automl = {"automl_algorithm": "asha", "automl_max_epochs": 4, "automl_max_concurrent": 1,
              "custom_param_ranges": {LR: {"min": 5e-5, "max": 7e-5}}}
    r = run_action(RunActionInput(**study_args(study_kitti, iter_seconds=1.0, automl=automl), confirm=True))
    s = finished(r.job_id, 150)
    st = s.study
    assert s.state == "succeeded" and st.progress.pruned == 3 and st.progress.completed == 1, s.digest
    store = app_context().store
    for row in st.trials[1:]:
        job = store.get(row.job_id)
        assert job.verdict["outcome"] == "pruned" and job.state == "canceled" and row.state == "pruned"
        assert max(h.epoch for h in job.metrics.history) < 4  # stopped before its last epoch
    assert running_trials(engine, r.job_id) == [] and st.best.trial == 0


def test_a_failing_trial_is_recorded_and_the_study_goes_on(study_kitti: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TAO_BEVFUSION_AUTOML_SEED", "1")  # proposals: baseline, lr > 3e-4, two below (checked)
    r = run_action(RunActionInput(**study_args(study_kitti, env={"FAKE_TAO_FAIL_LR_ABOVE": "3e-4"},
                                               automl={"automl_max_concurrent": 1}), confirm=True))
    s = finished(r.job_id, 120)
    assert s.state == "succeeded" and s.study.progress.failed >= 1 and s.study.progress.completed >= 2, s.digest
    for t in s.study.trials:
        assert (t.state == "fail") == (t.params[LR] > 3e-4), t
        if t.state == "fail":
            assert "out of memory" in (t.reason or "") and t.value is None
    assert s.study.best.params[LR] <= 3e-4


def test_consecutive_failures_stop_the_study_with_the_cause(study_kitti: Path):
    r = run_action(RunActionInput(**study_args(study_kitti, env={"FAKE_TAO_FAULT": "fail_at_iter"},
                                               automl={"automl_max_recommendations": 6, "automl_max_concurrent": 1}),
                                  confirm=True))
    s = finished(r.job_id, 120)
    assert s.state == "failed" and s.study.progress.failed == 3 and s.study.progress.completed == 0
    assert "ran out of GPU memory" in s.verdict.reason and "batch_size" in s.verdict.reason, s.verdict.reason
    assert all("out of memory" in (t.reason or "") for t in s.study.trials)


def test_driver_killed_and_a_container_removed_mid_study(study_kitti: Path, engine: docker.DockerClient):
    r = run_action(RunActionInput(**study_args(study_kitti, iter_seconds=1.0, automl={"automl_max_epochs": 4}),
                                  confirm=True))
    until(lambda: len(running_trials(engine, r.job_id)) == 2, 60, "two trial containers")
    first = get_job(r.job_id).study.driver
    assert first["alive"] and first["pid"]
    os.kill(first["pid"], signal.SIGKILL)
    until(lambda: not get_job(r.job_id).study.driver["alive"] or None, 10, "the driver to die", 0.2)
    store = app_context().store

    def checkpointed():
        for c in running_trials(engine, r.job_id):
            if (Path(store.get(c.labels[LABEL_JOB]).results_dir) / "train" / "epoch_1.pth").is_file():
                return c
        return None
    victim = until(checkpointed, 30, "a trial with its first checkpoint", 0.1)
    lost_job = victim.labels[LABEL_JOB]
    victim.remove(force=True)
    time.sleep(2)
    s = get_job(r.job_id)  # this call finds no live driver and starts one
    assert until(lambda: get_job(r.job_id).study.driver["alive"], 10, "a new driver")
    s = finished(r.job_id, 150)
    assert s.state == "succeeded" and s.study.progress.completed == 4, s.digest
    assert s.study.driver["pid"] != first["pid"]
    jobs = app_context().store.query(owner_id=r.job_id, limit=100)
    lost = app_context().store.get(lost_job)
    assert lost.verdict["outcome"] == "lost" and len(jobs) == 5  # one relaunch, no trial twice
    # The relaunch gets a folder of its own (a launch never reuses one holding a started job's outputs).
    again = next(j for j in jobs if j.results_dir == f"{lost.results_dir}_relaunch1")
    train = yaml.safe_load(Path(again.spec_path).read_text())["train"]
    assert again.state == "succeeded" and train["resume"] is True  # resumed from its exact last checkpoint
    assert re.search(r"/epoch_\d+\.pth$", train["resume_training_checkpoint_path"])  # a file, not latest
    assert "resumed epoch" in again.files(app_context().settings.home).log.read_text()
    assert sorted(t.number for t in s.study.trials) == [0, 1, 2, 3]


def test_cancel_stops_every_trial_and_the_study(study_kitti: Path, engine: docker.DockerClient):
    r = run_action(RunActionInput(**study_args(study_kitti, iter_seconds=2.0, automl={"automl_max_epochs": 5}),
                                  confirm=True))
    until(lambda: len(running_trials(engine, r.job_id)) == 2, 60, "two trial containers")
    c = cancel_job(r.job_id)
    assert c.state == "canceled"
    assert until(lambda: running_trials(engine, r.job_id) == [] or None, 30, "containers to stop")
    assert all(j.terminal for j in app_context().store.query(owner_id=r.job_id, limit=100))
    with pytest.raises(InputError, match="already ended"):
        cancel_job(r.job_id)
    time.sleep(1.5)
    assert len(app_context().store.query(owner_id=r.job_id, limit=100)) == 2  # the driver launched no more
