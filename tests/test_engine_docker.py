"""The execution engine against a real Docker engine and the TAO 5.5 stand-in image (no GPU, no registry)."""

import json
import subprocess
import sys
from pathlib import Path

import docker
import pytest
import yaml
from tao_bevfusion.core.errors import EngineError, InputError
from tao_bevfusion.core.layout import launch_sidecar
from tao_bevfusion.core.settings import Settings
from tao_bevfusion.jobs.launch import RunActionInput
from tao_bevfusion.jobs.logs import get_job_logs
from tao_bevfusion.jobs.store import JobStore
from tao_bevfusion.service.jobs import cancel_job, get_job, list_jobs
from tao_bevfusion.service.run import run_action
from tao_bevfusion.service.specs import build_spec
from tao_bevfusion.specbuild.build import BuildSpecInput
from tao_bevfusion.specbuild.sidecar import LaunchSidecar, sign

from tests.conftest import REPO, copy_sample, finish
from tests.dockerfix import containers_of

pytestmark = pytest.mark.docker
FAST = {"num_epochs": 2, "batch_size": 1}


def launch(action: str, data_root: Path, **kw):
    kw.setdefault("gpus", [])
    if action == "train":
        kw.setdefault("automl_policy", "off")
    return run_action(RunActionInput(action=action, data_root=str(data_root), **kw))


@pytest.fixture
def converted(docker_ws: Path) -> Path:
    root = copy_sample(docker_ws / "kitti")
    s = finish(launch("dataset_convert", root).job_id)
    assert s.state == "succeeded", s
    return root


def test_full_pipeline_verdicts_progress_and_metrics(converted: Path):
    train = launch("train", converted, overrides={"num_epochs": 3, "batch_size": 1})
    assert train.job_id and train.plan and train.plan.command[:2] == ["bevfusion", "train"]
    t = finish(train.job_id)
    assert t.state == "succeeded" and t.verdict.outcome == "succeeded" and t.verdict.footer == "PASS"
    assert t.progress.epoch == 3 == t.progress.max_epochs and t.progress.iteration == 6
    assert t.artifacts["checkpoints"] == ["epoch_1.pth", "epoch_2.pth", "epoch_3.pth"]
    assert t.metrics["best_epoch"] == 3 and [h["epoch"] for h in t.metrics["per_epoch"]] == [1, 2, 3]
    assert any("resolve_parent_checkpoint" in s for s in t.next_steps)
    assert not [e for e in t.errors if e.severity == "error"]
    ev = finish(launch("evaluate", converted, parent_job_id=train.job_id).job_id)
    assert ev.state == "succeeded" and ev.metrics["AP11"] == t.metrics["best_AP11"]
    lineage = ev.artifacts["parent_checkpoint"]
    assert lineage["epoch"] == 3 and lineage["path"].endswith("train/epoch_3.pth") and "best" in lineage["method"]
    assert ev.metrics["person_3D_AP40_moderate_strict"] == t.metrics["AP40"]
    inf = finish(launch("inference", converted, parent_job_id=train.job_id).job_id)
    assert inf.state == "succeeded" and "1 prediction files" in inf.verdict.usable_artifacts[0]
    assert len(inf.model_dump_json()) < 8192 and len(t.model_dump_json()) < 8192
    assert [j.job_id for j in list_jobs(action="train")] == [train.job_id]


def test_launch_recipe_user_mounts_env_and_no_telemetry(converted: Path, engine: docker.DockerClient):
    r = launch("train", converted, overrides={"num_epochs": 1, "batch_size": 1}, env={"FAKE_TAO_ITER_SECONDS": "0.3"})
    c = engine.containers.get(f"tao-{r.job_id}")
    host = c.attrs["HostConfig"]
    assert c.attrs["Config"]["User"] == f"{__import__('os').getuid()}:{__import__('os').getgid()}"
    assert host["ShmSize"] == 16 * 1024**3 and host["NetworkMode"] == "none"
    assert {u["Name"]: u["Hard"] for u in host["Ulimits"]}["stack"] == 67108864
    binds = {b.split(":")[1]: b.split(":")[2] for b in host["Binds"]}
    assert binds["/data"] == "ro" and binds["/specs"] == "ro" and "/tao-scratch" not in binds
    env = dict(e.split("=", 1) for e in c.attrs["Config"]["Env"])
    results = next(k for k, v in binds.items() if k.startswith("/results/"))
    assert binds[results] == "rw" and env["TAO_TOOLKIT_CACHE"] == f"{results}/.cache"
    assert env["TELEMETRY_OPT_OUT"] == "yes" and env["HOME"] == f"{results}/.home"
    assert "JOB_ID" not in env
    assert c.labels["tao-bevfusion.job"] == r.job_id
    s = finish(r.job_id)
    assert s.state == "succeeded"
    assert "telemetry" not in {e.pattern for e in s.errors}


@pytest.mark.parametrize("fault,action,outcome,pattern,reason_part", [
    ("fail_at_iter", "train", "failed", "cuda_oom", "FAILURE in status.json"),
    ("worker_sigkill", "train", "failed", "worker_sigkill", "SIGKILL"),
    ("interrupt", "train", "failed", None, "interrupted"),
    ("no_mmdet3d", "train", "failed", "wrong_image_no_mmdet3d", "before the action started"),
    ("post_eval_segv", "evaluate", "succeeded_with_teardown_crash", "post_eval_sigsegv", "teardown"),
])
def test_fault_verdicts(converted: Path, docker_ws: Path, fault, action, outcome, pattern, reason_part):
    kw = {"overrides": FAST, "env": {"FAKE_TAO_FAULT": fault}}
    if action == "evaluate":
        ckpt = docker_ws / "ptm" / "epoch_2.pth"
        ckpt.parent.mkdir()
        ckpt.write_text(json.dumps({"epoch": 2}))
        kw = {"checkpoint": str(ckpt), "env": {"FAKE_TAO_FAULT": fault}}
    s = finish(launch(action, converted, **kw).job_id)
    assert s.verdict.outcome == outcome, s.verdict
    assert reason_part in s.verdict.reason
    assert s.verdict.exit_code == 0  # the 5.5 CLI exits 0 whatever happened
    if pattern:
        hit = next(e for e in s.errors if e.pattern == pattern)
        assert hit.evidence and hit.remedy
    if fault == "interrupt":
        assert s.verdict.footer == "PASS"  # the misleading footer of contract §6 row 2
    if fault == "post_eval_segv":
        assert s.state == "succeeded" and s.verdict.footer == "FAIL" and s.verdict.usable_artifacts
    if fault == "worker_sigkill":
        assert s.artifacts["checkpoints"] == ["epoch_1.pth"]
        assert any('"resume": true' in step for step in s.next_steps)


def test_real_oom_kill_of_a_worker(converted: Path):
    """The cgroup OOM killer takes the worker (the largest process); the 5.5 launcher survives and exits 0."""
    s = finish(launch("train", converted, overrides=FAST, env={"FAKE_TAO_FAULT": "oom"},
                       backend_options={"mem_limit": "160m"}).job_id)
    assert s.verdict.outcome == "killed" and s.state == "failed"
    assert "out-of-memory" in s.verdict.reason and s.verdict.exit_code == 0 and s.verdict.footer == "FAIL"
    assert "worker_sigkill" in {e.pattern for e in s.errors}


def _tampered_spec(root: Path, edit) -> str:
    built = build_spec(BuildSpecInput(action="train", data_root=str(root), overrides=FAST))
    spec = yaml.safe_load(Path(built.spec_path).read_text())
    edit(spec)
    text = yaml.safe_dump(spec, sort_keys=False)
    Path(built.spec_path).write_text(text)
    # Re-signed with the state dir's key, as build_spec would: these tests are about what the container does
    # with such a spec, not about forged launch records (tests/attacks covers those).
    side = LaunchSidecar.model_validate_json(launch_sidecar(Path(built.spec_path)).read_text())
    side.spec_sha256 = __import__("hashlib").sha256(text.encode()).hexdigest()
    launch_sidecar(Path(built.spec_path)).write_text(sign(side, Settings.from_env().home).model_dump_json())
    return built.spec_path


def test_7x_key_fails_before_start_and_is_explained(converted: Path):
    path = _tampered_spec(converted, lambda s: s.update(model_name="bevfusion"))
    s = finish(run_action(RunActionInput(action="train", spec_path=path, gpus=[], automl_policy="off")).job_id)
    assert s.verdict.outcome == "failed" and "before the action started" in s.verdict.reason
    assert {"newer_spec_keys", "config_key_error"} & {e.pattern for e in s.errors}


def test_default_swin_init_cfg_reaches_for_the_internet(converted: Path):
    path = _tampered_spec(converted, lambda s: s["model"]["img_backbone"].pop("init_cfg"))
    s = finish(run_action(RunActionInput(action="train", spec_path=path, gpus=[], automl_policy="off")).job_id)
    assert s.state == "failed" and "swin_download" in {e.pattern for e in s.errors}


def test_train_before_convert_is_stopped_by_preflight(docker_ws: Path, engine: docker.DockerClient):
    root = copy_sample(docker_ws / "raw")
    with pytest.raises(InputError) as exc:
        launch("train", root, overrides=FAST)
    assert "dataset_convert" in str(exc.value) and "nothing was launched" in str(exc.value)
    assert list_jobs() == [] and not containers_of(engine, docker_ws)


def test_cancel_is_recorded_and_idempotent(converted: Path):
    r = launch("train", converted, overrides={"num_epochs": 5, "batch_size": 1}, env={"FAKE_TAO_ITER_SECONDS": "1"})
    c = cancel_job(r.job_id)
    assert c.state == "canceled"
    s = get_job(r.job_id)
    assert s.verdict.outcome == "canceled" and s.verdict.exit_code == 137
    again = cancel_job(r.job_id)
    assert again.state == "canceled" and "nothing to cancel" in again.message


def test_external_kill_is_killed_not_canceled(converted: Path, engine: docker.DockerClient):
    # max_retries=0: the verdict itself (with retries on, a kill from outside is resumed: test_run_safety_docker)
    r = launch("train", converted, overrides={"num_epochs": 5, "batch_size": 1}, env={"FAKE_TAO_ITER_SECONDS": "1"},
               max_retries=0)
    engine.containers.get(f"tao-{r.job_id}").kill()
    s = finish(r.job_id)
    assert s.verdict.outcome == "killed" and s.state == "failed" and "outside" in s.verdict.reason


def test_container_removed_behind_our_back_is_lost(converted: Path, engine: docker.DockerClient):
    r = launch("train", converted, overrides={"num_epochs": 5, "batch_size": 1}, env={"FAKE_TAO_ITER_SECONDS": "1"},
               max_retries=0)
    engine.containers.get(f"tao-{r.job_id}").remove(force=True)
    s = finish(r.job_id)
    assert s.state == "unknown" and s.verdict.outcome == "lost"


def test_reattach_from_a_fresh_process_by_label(converted: Path, docker_ws: Path):
    r = launch("train", converted, overrides={"num_epochs": 2, "batch_size": 1}, env={"FAKE_TAO_ITER_SECONDS": "0.4"})
    JobStore(Settings.from_env().home).update(r.job_id, handle=None)  # as if the server died before saving it
    code = (f"import time\nfrom tao_bevfusion.service.jobs import get_job\n"
            f"while get_job('{r.job_id}').state == 'running': time.sleep(0.5)\n"
            f"print(get_job('{r.job_id}').model_dump_json())")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    other = json.loads(proc.stdout)
    assert other["state"] == "succeeded" and other["progress"]["epoch"] == 2
    assert get_job(r.job_id).state == "succeeded"  # and this process sees the record the other one finished


def test_two_jobs_at_once_and_a_busy_results_dir(converted: Path, docker_ws: Path):
    slow = {"FAKE_TAO_ITER_SECONDS": "0.3"}
    a = launch("train", converted, overrides=FAST, env=slow, results_dir=str(docker_ws / "runs" / "a"))
    b = launch("train", converted, overrides=FAST, env=slow, results_dir=str(docker_ws / "runs" / "b"))
    with pytest.raises(InputError, match="in use by running job"):
        launch("train", converted, overrides=FAST, results_dir=str(docker_ws / "runs" / "a"))
    assert finish(a.job_id).state == finish(b.job_id).state == "succeeded"


def test_missing_image_stops_before_launch(converted: Path, engine: docker.DockerClient,
                                          monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TAO_BEVFUSION_TRUSTED_IMAGES", "tao-bevfusion-does-not-exist:*")
    with pytest.raises(InputError) as exc:
        launch("train", converted, overrides=FAST, image="tao-bevfusion-does-not-exist:1")
    assert "not present locally" in str(exc.value) and "docker pull" in str(exc.value)
    assert not containers_of(engine, converted.parent)


def test_gpu_request_on_a_host_without_nvidia_runtime(converted: Path, engine: docker.DockerClient):
    dry = launch("train", converted, overrides=FAST, gpus=["0"], dry_run=True)
    runtime = next(c for c in dry.plan.preflight if c.name == "gpu_runtime")
    assert runtime.severity == "warning" and "nvidia-container-toolkit" in runtime.fix
    before = len(list_jobs(action="train"))
    with pytest.raises(EngineError) as exc:  # the engine's trouble, not the input's
        launch("train", converted, overrides=FAST, gpus=["0"])
    assert "nvidia-container-toolkit" in str(exc.value) and 'could not select device driver ""' in str(exc.value)
    assert "no job was recorded" in str(exc.value) and "invalid input" not in str(exc.value)
    assert len(list_jobs(action="train")) == before  # no orphan whose id was never returned
    # And the engine's own refusal, when a launch gets that far, says what to install.
    from tao_bevfusion.backends.docker import DockerBackend
    from tao_bevfusion.jobs.context import app_context
    from tao_bevfusion.jobs.launch import _request
    from tao_bevfusion.specbuild.sidecar import read_sidecar

    built = build_spec(BuildSpecInput(action="train", data_root=str(converted), overrides=FAST))
    inp = RunActionInput(action="train", spec_path=built.spec_path, gpus=["0"])
    backend = DockerBackend()
    side = read_sidecar(Path(built.spec_path), Settings.from_env().home)
    req = _request(inp, "j" + "1" * 16, Path(built.spec_path), side, backend, app_context(), 1)
    with pytest.raises(EngineError) as exc2:
        backend.submit(backend.plan(req))
    text = str(exc2.value)
    assert 'could not select device driver ""' in text and "nvidia-container-toolkit" in text
    assert not containers_of(engine, converted.parent)


def test_logs_page_tail_offset_grep(converted: Path):
    s = finish(launch("train", converted, overrides=FAST).job_id)
    tail = get_job_logs(s.job_id, tail_lines=3)
    assert "Execution status: PASS" in tail.text and len(tail.text.splitlines()) <= 3
    first = get_job_logs(s.job_id, offset=0, max_bytes=300)
    assert first.offset == 0 and first.truncated and '"offset": ' in first.hint
    nxt = get_job_logs(s.job_id, offset=first.next_offset, max_bytes=300)
    assert nxt.offset == first.next_offset
    grep = get_job_logs(s.job_id, grep=r"Epoch\(val\)")
    assert grep.text and all("Epoch(val)" in ln for ln in grep.text.splitlines())
    with pytest.raises(InputError, match="regex"):
        get_job_logs(s.job_id, grep="(")
