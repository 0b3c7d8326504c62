"""Job store semantics, the local backend (host process), input refusals, and golden dry-run plans."""

import json
import os
import sys
import time
from pathlib import Path

import pytest
from tao_bevfusion.backends.environment import validate_env
from tao_bevfusion.core.errors import EngineError, InputError
from tao_bevfusion.jobs.launch import RunActionInput
from tao_bevfusion.jobs.store import JobStore
from tao_bevfusion.service.jobs import cancel_job, get_job
from tao_bevfusion.service.run import run_action

from tests.conftest import REPO, copy_sample, finish

STANDIN = REPO / "tests" / "standin" / "bevfusion_standin.py"
GOLDEN = REPO / "tests" / "golden"


def test_terminal_states_never_change(tmp_path: Path):
    store = JobStore(tmp_path)
    job = store.create(action="train", backend="local", spec_path="/s", spec_sha256="x", results_dir="/r",
                       data_root="/d")
    assert store.update(job.id, state="running") and store.update(job.id, state="failed")
    assert not store.update(job.id, state="succeeded")
    assert JobStore(tmp_path).get(job.id).state == "failed"  # a second store (process) sees the same


@pytest.mark.parametrize("bad", ["", "../etc", "j123", "J0123456789ABCDEF", "j0123456789abcdeg", "x" * 100])
def test_malformed_job_ids_are_refused(tmp_path: Path, bad: str):
    with pytest.raises(InputError, match="not a job id"):
        JobStore(tmp_path).get(bad)


def test_unknown_job_id_names_the_next_call(workspace: Path):
    with pytest.raises(InputError, match="list_jobs"):
        get_job("j0123456789abcdef")


@pytest.mark.parametrize("env,msg", [
    ({"TELEMETRY_OPT_OUT": "no"}, "set by the launcher"), ({"JOB_ID": "x"}, "set by the launcher"),
    ({"CUDA_VISIBLE_DEVICES": "3"}, "set by the launcher"), ({"NGC_API_KEY": "abc"}, "secret"),
    ({"bad-name": "1"}, "valid variable"),
])
def test_env_that_overrides_safety_is_refused(env, msg):
    with pytest.raises(InputError, match=msg):
        validate_env(env)


@pytest.fixture
def local_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAO_BEVFUSION_LOCAL_CLI", json.dumps([sys.executable, str(STANDIN)]))


def test_local_backend_pipeline(workspace: Path, local_cli: None):
    root = copy_sample(workspace / "kitti")
    conv = run_action(RunActionInput(action="dataset_convert", data_root=str(root), backend="local",
                                     wait_seconds=20))
    assert finish(conv.job_id).state == "succeeded"
    train = run_action(RunActionInput(action="train", data_root=str(root), backend="local", automl_policy="off",
                                      overrides={"num_epochs": 2, "batch_size": 1}))
    s = finish(train.job_id)
    assert s.state == "succeeded" and s.artifacts["checkpoints"] == ["epoch_1.pth", "epoch_2.pth"]
    ev = run_action(RunActionInput(action="evaluate", data_root=str(root), backend="local",
                                   parent_job_id=train.job_id))
    assert finish(ev.job_id).metrics["AP11"] > 0


def test_local_cancel_and_missing_cli(workspace: Path, local_cli: None, monkeypatch: pytest.MonkeyPatch):
    root = copy_sample(workspace / "kitti")
    finish(run_action(RunActionInput(action="dataset_convert", data_root=str(root), backend="local")).job_id)
    r = run_action(RunActionInput(action="train", data_root=str(root), backend="local", automl_policy="off",
                                  overrides={"num_epochs": 5, "batch_size": 1}, env={"FAKE_TAO_ITER_SECONDS": "1"}))
    c = cancel_job(r.job_id)
    assert c.state == "canceled" and get_job(r.job_id).verdict.outcome == "canceled"
    monkeypatch.setenv("TAO_BEVFUSION_LOCAL_CLI", "/nonexistent/bevfusion")
    with pytest.raises(InputError, match="not on this host"):
        run_action(RunActionInput(action="dataset_convert", data_root=str(root), backend="local"))


def _normalise(obj, ws: Path):
    text = json.dumps(obj, indent=2, sort_keys=True)
    text = text.replace(str(ws), "<ws>").replace(sys.executable, "<python>").replace(str(REPO), "<repo>")
    text = text.replace(f'"{os.getuid()}:{os.getgid()}"', '"<uid>:<gid>"')
    import re

    text = re.sub(r"\d{8}-\d{6}-[0-9a-f]{6}", "<stamp>", text)
    return re.sub(r"j[0-9a-f]{16}", "<job>", text)


@pytest.mark.parametrize("backend,action", [("docker", "train"), ("docker", "dataset_convert"),
                                            ("local", "evaluate")])
def test_dry_run_plans_match_golden_files(workspace: Path, monkeypatch: pytest.MonkeyPatch, backend, action):
    monkeypatch.setenv("TAO_BEVFUSION_IMAGE", "nvcr.io/nvidia/tao/tao-toolkit:5.5.0-pyt")
    monkeypatch.setenv("TAO_BEVFUSION_LOCAL_CLI", "bevfusion")
    monkeypatch.delenv("TAO_BEVFUSION_MEMLOCK", raising=False)
    monkeypatch.setenv("PATH", f"{workspace}/bin:{os.environ['PATH']}")
    (workspace / "bin").mkdir()
    (workspace / "bin" / "bevfusion").write_text("#!/bin/sh\n")
    root = copy_sample(workspace / "kitti")
    kw = {"num_gpus": 2, "gpus": ["2", "3"]} if action == "train" else {}
    if action == "evaluate":
        (workspace / "m").mkdir()
        (workspace / "m" / "epoch_2.pth").write_text("{}")
        kw = {"checkpoint": str(workspace / "m" / "epoch_2.pth")}
    r = run_action(RunActionInput(action=action, data_root=str(root), backend=backend, dry_run=True,
                                  automl_policy="off", results_dir=str(workspace / "runs" / "r1"), **kw))
    assert r.job_id is None and r.state == "planned"
    plan = r.plan.model_dump()
    names = [c["name"] for c in plan.pop("preflight")]  # depends on the host (engine, GPUs), not on the plan
    assert ("engine" if backend == "docker" else "cli") in names
    got = _normalise(plan, workspace)
    golden = GOLDEN / f"plan_{backend}_{action}.json"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(got + "\n")
    assert got + "\n" == golden.read_text()
    assert not (workspace / "home" / "jobs.db").exists() or not JobStore(workspace / "home").query()


def test_one_active_job_per_results_dir_is_enforced_by_the_store(tmp_path: Path):
    store = JobStore(tmp_path)
    fields = {"action": "train", "backend": "local", "spec_path": "/s", "spec_sha256": "x", "results_dir": "/r",
              "data_root": "/d"}
    first = store.create(**fields)
    with pytest.raises(InputError, match="in use by another"):
        store.create(**fields)
    store.update(first.id, state="failed")
    assert store.create(**fields).state == "pending"  # a finished job frees the folder


def test_encryption_key_is_redacted_from_logs_and_summaries(workspace: Path, local_cli: None):
    root = copy_sample(workspace / "kitti")
    r = run_action(RunActionInput(action="dataset_convert", data_root=str(root), backend="local"))
    finish(r.job_id)
    from tao_bevfusion.jobs.logs import get_job_logs
    from tao_bevfusion.service.specs import build_spec
    from tao_bevfusion.specbuild.build import BuildSpecInput

    built = build_spec(BuildSpecInput(action="train", data_root=str(root), backend="local", encryption_key="s3cr3t-key",
                                      overrides={"num_epochs": 1, "batch_size": 1}))
    job = run_action(RunActionInput(action="train", spec_path=built.spec_path, automl_policy="off",
                                    env={"FAKE_TAO_FAULT": "fail_at_iter"}))
    finish(job.job_id)
    log = Path(os.environ["TAO_BEVFUSION_HOME"]) / "jobs" / job.job_id / "job.log"
    with open(log, "a") as fh:
        fh.write("config dump: encryption_key = s3cr3t-key\nRuntimeError: CUDA out of memory (key s3cr3t-key)\n")
    page = get_job_logs(job.job_id, grep="encryption_key|out of memory")
    assert "s3cr3t-key" not in page.text and "***" in page.text
    assert "s3cr3t-key" not in get_job(job.job_id).model_dump_json()


def test_unreachable_engine_is_an_error_and_the_record_survives(workspace: Path, monkeypatch: pytest.MonkeyPatch):
    import tao_bevfusion.backends.docker as dockerbackend
    from tao_bevfusion.core.settings import Settings

    monkeypatch.setenv("DOCKER_HOST", f"unix://{workspace}/no-engine.sock")
    monkeypatch.setattr(dockerbackend, "_CLIENTS", {})
    store = JobStore(Settings.from_env().home)
    job = store.create(action="train", backend="docker", spec_path="/s", spec_sha256="x", results_dir="/r",
                       data_root="/d")
    store.update(job.id, state="running", handle="0123abcd")
    with pytest.raises(EngineError) as exc:  # the engine's trouble, not the input's (issue 17 item 19)
        get_job(job.id)
    assert exc.value.problems[0].code == "ENGINE_UNREACHABLE" and "start dockerd" in str(exc.value)
    assert store.get(job.id).state == "running"


def test_finished_but_unpolled_job_does_not_block_its_results_dir(workspace: Path, local_cli: None):
    root = copy_sample(workspace / "kitti")
    first = run_action(RunActionInput(action="dataset_convert", data_root=str(root), backend="local"))
    assert first.state == "running"
    exit_file = Path(os.environ["TAO_BEVFUSION_HOME"]) / "jobs" / first.job_id / "exit.json"
    deadline = time.monotonic() + 30
    while not exit_file.exists() and time.monotonic() < deadline:  # finished, and nobody polled it
        time.sleep(0.2)
    second = run_action(RunActionInput(action="dataset_convert", data_root=str(root), backend="local"))
    assert second.job_id != first.job_id and get_job(first.job_id).state == "succeeded"
    assert finish(second.job_id).state == "succeeded"


def test_root_directory_never_becomes_an_allowed_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    from tao_bevfusion.core.settings import Settings

    monkeypatch.delenv("TAO_BEVFUSION_ROOTS", raising=False)
    monkeypatch.setenv("TAO_BEVFUSION_HOME", str(tmp_path / "home"))
    monkeypatch.chdir("/")
    assert Settings.from_env().roots == ((tmp_path / "home").resolve(),)
    monkeypatch.chdir(tmp_path)
    assert tmp_path.resolve() in Settings.from_env().roots
