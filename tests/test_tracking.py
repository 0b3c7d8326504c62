"""MLflow tracking against a real `mlflow server` (tests/mlflowfix.py) and the stand-in on the local backend:
what a plain, a resumed, a failed run and a study with pruned trials leave there, read back through MLflow's
own client; bad settings are warnings and the job runs; a tracker killed mid-run costs nothing but a warning
and its metrics are complete once it is back."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from mcp import Client, StdioServerParameters
from mlflow.tracking import MlflowClient
from tao_bevfusion.core import layout
from tao_bevfusion.evidence.status import read_all
from tao_bevfusion.jobs.context import app_context
from tao_bevfusion.jobs.launch import RunActionInput
from tao_bevfusion.present.summary import JobSummary
from tao_bevfusion.service.jobs import get_job
from tao_bevfusion.service.run import run_action
from tao_bevfusion.tracking.sender import SENDER

from tests.conftest import REPO, SERVE_ARGS, copy_sample
from tests.mlflowfix import MlflowServer, free_port

KEY = "tlt-s3cr3t-Key-77"


@pytest.fixture
def kitti_converted(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    standin = REPO / "tests" / "standin" / "bevfusion_standin.py"
    monkeypatch.setenv("TAO_BEVFUSION_LOCAL_CLI", json.dumps([sys.executable, str(standin)]))
    monkeypatch.delenv("TAO_BEVFUSION_MLFLOW_URI", raising=False)
    root = copy_sample(workspace / "kitti")
    done(run_action(RunActionInput(action="dataset_convert", data_root=str(root), backend="local")).job_id)
    return root


WARNED: dict[str, int] = {}  # job id -> tracking warning lines seen in get_job texts


def polled(job_id: str) -> JobSummary:
    s = get_job(job_id)
    WARNED[job_id] = WARNED.get(job_id, 0) + sum("warning: tracking:" in line for line in s.report)
    return s


def done(job_id: str | None, timeout: float = 180) -> JobSummary:
    assert job_id
    deadline = time.monotonic() + timeout
    while (s := polled(job_id)).state in ("pending", "running"):
        assert time.monotonic() < deadline, f"{job_id} still {s.state}"
        time.sleep(0.3)
    return s


def train(root: Path, tracking: dict[str, Any] | None, epochs: int = 3, **kw: Any) -> str:
    env = {"FAKE_TAO_ITER_SECONDS": "0.05", **kw.pop("env", {})}
    r = run_action(RunActionInput(action="train", data_root=str(root), backend="local", automl_policy="off",
                                  overrides={"num_epochs": epochs, "batch_size": 1}, tracking=tracking,
                                  env=env, **kw))
    assert r.job_id
    return r.job_id


def the_run(client: MlflowClient, experiment: str, job_id: str) -> Any:
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment}"
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`tao.job_id` = '{job_id}'")
    assert len(runs) == 1, f"{len(runs)} runs for {job_id}"
    return runs[0]


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def status_records(job_id: str) -> list[Any]:
    s = get_job(job_id)
    return read_all(layout.status_path("train", Path(s.results_dir), Path("/")))


def artifact_names(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    out: set[str] = set()
    for a in client.list_artifacts(run_id, path):
        out |= artifact_names(client, run_id, a.path) if a.is_dir else {a.path}
    return out


def test_plain_run_params_metrics_artifacts_and_no_repeats(kitti_converted: Path, mlflow_server: MlflowServer):
    tracking = {"mlflow": mlflow_server.uri, "experiment": "plain"}
    job_id = train(kitti_converted, tracking, epochs=3, encryption_key=KEY)
    s = done(job_id)
    assert s.state == "succeeded" and SENDER.flush(60, {job_id})
    client = MlflowClient(mlflow_server.uri)
    run = the_run(client, "plain", job_id)
    assert run.info.status == "FINISHED"
    p, tags = run.data.params, run.data.tags
    launched = yaml.safe_load(Path(app_context().store.get(job_id).spec_path).read_text())
    lr = launched["train"]["optimizer"]["lr"]  # the spec that ran (its lr follows the global batch: issue 18)
    assert (p["learning_rate"], p["weight_decay"], p["batch_size"], p["epochs"]) == (str(lr), "0.01", "1", "3")
    assert p["nodes_x_gpus"] == "1x1" and p["data_root"] == str(kitti_converted) and p["image"]
    assert tags["tao.action"] == "train" and tags["tao.backend"] == "local" and tags["tao.verdict"] == "succeeded"
    records = status_records(job_id)
    iters = [(r.cur_iter, r.loss) for r in records if r.is_train]
    assert history(client, run.info.run_id, "train/loss") == sorted(iters) and len(iters) >= 3
    assert [st for st, _ in history(client, run.info.run_id, "val/AP11")] == [1, 2, 3]
    assert history(client, run.info.run_id, "kitti/person_3D_AP11_moderate_strict")
    names = artifact_names(client, run.info.run_id)
    assert {"spec.yaml", "summary.json", "curve.png"} <= names
    spec_text = Path(client.download_artifacts(run.info.run_id, "spec.yaml")).read_text()
    assert KEY not in spec_text and "encryption_key: '***'" in spec_text and KEY not in json.dumps(p)
    url = get_job(job_id).tracking["run_url"]
    assert url.startswith(mlflow_server.uri) and run.info.run_id in url
    # Re-polls here and a fresh process (a restarted server) add nothing.
    for _ in range(3):
        get_job(job_id)
    code = "import sys; from tao_bevfusion.service.jobs import get_job; get_job(sys.argv[1])"
    subprocess.run([sys.executable, "-c", code, job_id], check=True, env=os.environ.copy(), timeout=120)
    assert SENDER.flush(30, {job_id})
    assert history(client, run.info.run_id, "train/loss") == sorted(iters)
    assert len(client.get_metric_history(run.info.run_id, "val/AP40")) == 3


def test_resumed_and_failed_runs(kitti_converted: Path, mlflow_server: MlflowServer):
    tracking = {"mlflow": mlflow_server.uri, "experiment": "lineage"}
    first = train(kitti_converted, tracking, epochs=2)
    assert done(first).state == "succeeded"
    resumed = train(kitti_converted, tracking, epochs=4, parent_job_id=first, resume=True)
    failed = train(kitti_converted, tracking, epochs=2, env={"FAKE_TAO_FAULT": "fail_at_iter"})
    assert done(resumed).state == "succeeded" and done(failed).state == "failed"
    assert SENDER.flush(60, {first, resumed, failed})
    client = MlflowClient(mlflow_server.uri)
    run = the_run(client, "lineage", resumed)
    assert run.data.tags["tao.parent_job_id"] == first and run.info.status == "FINISHED"
    assert [st for st, _ in history(client, run.info.run_id, "val/AP11")] == [3, 4]
    first_iter = min(st for st, _ in history(client, run.info.run_id, "train/loss"))
    assert first_iter > max(st for st, _ in history(client, the_run(client, "lineage", first).info.run_id,
                                                      "train/loss"))
    bad = the_run(client, "lineage", failed)
    assert bad.info.status == "FAILED" and bad.data.tags["tao.verdict"] == "failed"
    assert history(client, bad.info.run_id, "train/loss") and "spec.yaml" in artifact_names(client, bad.info.run_id)


def test_bad_settings_are_warnings_naming_the_setting_and_the_job_runs(
        kitti_converted: Path, mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch):
    r = run_action(RunActionInput(action="train", data_root=str(kitti_converted), backend="local",
                                  automl_policy="off", overrides={"num_epochs": 1, "batch_size": 1},
                                  tracking={"mlflow": "htp:/nowhere", "experiment": "x", "colour": 1}))
    told = [w for w in r.warnings if w.startswith("tracking:")]
    assert any("tracking.mlflow" in w and "not an MLflow tracking URI" in w for w in told)
    assert any("tracking.colour" in w for w in told)
    assert done(r.job_id).state == "succeeded"

    monkeypatch.setenv("TAO_BEVFUSION_MLFLOW_URI", "http://me:hunter2@127.0.0.1:5000")
    r = run_action(RunActionInput(action="train", data_root=str(kitti_converted), backend="local",
                                  automl_policy="off", overrides={"num_epochs": 1, "batch_size": 1}))
    told = [w for w in r.warnings if w.startswith("tracking:")]
    assert told and "TAO_BEVFUSION_MLFLOW_URI" in told[0] and "hunter2" not in " ".join(told)
    assert done(r.job_id).state == "succeeded" and "hunter2" not in get_job(r.job_id).model_dump_json()
    monkeypatch.delenv("TAO_BEVFUSION_MLFLOW_URI")

    client = MlflowClient(mlflow_server.uri)
    client.delete_experiment(client.create_experiment("gone"))
    refused = train(kitti_converted, {"mlflow": mlflow_server.uri, "experiment": "gone"}, epochs=1)
    down = train(kitti_converted, {"mlflow": f"http://127.0.0.1:{free_port()}", "experiment": "x"}, epochs=1)
    for job_id, words in ((refused, ("tracking.experiment", "deleted")), (down, ("tracking.mlflow", "unreachable"))):
        s = done(job_id)
        assert s.state == "succeeded"
        SENDER.flush(3)
        deadline = time.monotonic() + 60
        while not (s := polled(job_id)).tracking["warning"] and time.monotonic() < deadline:
            time.sleep(0.5)
        assert all(w in s.tracking["warning"] for w in words), s.tracking
        for _ in range(3):
            polled(job_id)
        assert WARNED[job_id] == 1  # the first failure, said once in the text; tracking.warning stays


def test_tracker_killed_mid_run_costs_a_warning_and_the_metrics_complete_later(
        kitti_converted: Path, tmp_path: Path):
    server = MlflowServer(tmp_path / "killable").start()
    try:
        tracking = {"mlflow": server.uri, "experiment": "outage"}
        job_id = train(kitti_converted, tracking, epochs=6, env={"FAKE_TAO_ITER_SECONDS": "0.4"})
        deadline = time.monotonic() + 120
        while not (get_job(job_id).tracking or {}).get("run_id"):
            assert time.monotonic() < deadline, "the run never appeared"
            time.sleep(0.3)
        server.stop()
        s = done(job_id)
        assert s.state == "succeeded"
        SENDER.flush(2)
        assert "unreachable" in (get_job(job_id).tracking["warning"] or "")
        server.start()
        assert SENDER.flush(120, {job_id}), get_job(job_id).model_dump_json()
        client = MlflowClient(server.uri)
        run = the_run(client, "outage", job_id)
        records = status_records(job_id)
        assert history(client, run.info.run_id, "train/loss") == sorted((r.cur_iter, r.loss) for r in records
                                                                         if r.is_train)
        assert [st for st, _ in history(client, run.info.run_id, "val/AP11")] == [1, 2, 3, 4, 5, 6]
        assert run.info.status == "FINISHED" and get_job(job_id).tracking["warning"] is None
    finally:
        server.stop()


def test_study_is_a_parent_run_with_nested_trials_pruned_ones_and_the_best_registered(
        kitti_converted: Path, mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TAO_BEVFUSION_AUTOML_TICK", "0.3")
    lr = "train.optimizer.lr"
    automl = {"automl_algorithm": "asha", "automl_max_epochs": 4, "automl_max_concurrent": 1,
              "automl_max_recommendations": 4, "automl_hyperparameters": [lr, "train.optimizer.weight_decay"],
              "custom_param_ranges": {lr: {"min": 5e-5, "max": 7e-5}}}  # every trial loses to the baseline
    tracking = {"mlflow": mlflow_server.uri, "experiment": "study", "register_best": True,
                "model_name": "bevfusion-test"}
    args = {"action": "train", "data_root": str(kitti_converted), "backend": "local", "gpus": [],
            "env": {"FAKE_TAO_ITER_SECONDS": "0.3"}, "overrides": {"batch_size": 1}, "automl_settings": automl,
            "tracking": tracking}
    study_id = run_action(RunActionInput(**args, confirm=True)).job_id
    s = done(study_id, timeout=400)
    assert s.state == "succeeded" and s.study and s.study.progress.pruned == 3, s.digest
    trial_ids = {row.job_id for row in s.study.trials if row.job_id}
    for trial in trial_ids:
        get_job(trial)  # whatever the driver left queued at its exit goes out from here
    assert SENDER.flush(120, {study_id, *trial_ids})
    client = MlflowClient(mlflow_server.uri)
    parent = the_run(client, "study", study_id)
    tags = parent.data.tags
    assert tags["tao.kind"] == "study" and tags["tao.best_trial"] == "0" and parent.info.status == "FINISHED"
    assert tags["tao.best_checkpoint"].endswith(".pth") and tags["tao.registered_model"] == "bevfusion-test/1"
    assert parent.data.params["algorithm"] == "asha" and parent.data.params["trials"] == "4"
    assert [st for st, _ in history(client, parent.info.run_id, "study/best_AP11")] == [0, 1, 2, 3]
    assert {"study/trials.json", "study/best_rec.json"} <= artifact_names(client, parent.info.run_id)
    nested = client.search_runs([parent.info.experiment_id],
                                filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert {r.data.tags["tao.job_id"] for r in nested} == trial_ids
    by_verdict = {r.data.tags["tao.job_id"]: r for r in nested}
    best = by_verdict[tags["tao.best_job_id"]]
    assert best.data.tags.get("tao.best_trial") == "true" and best.info.status == "FINISHED"
    pruned = [r for r in nested if r.data.tags["tao.trial_state"] == "pruned"]
    seen = [(r.data.tags["tao.job_id"], r.data.tags.get("tao.verdict"), r.info.status) for r in nested]
    assert len(pruned) == 3, seen
    for r in pruned:  # killed at its rung; rarely the kill lands after its last epoch (then it finished)
        steps = [st for st, _ in history(client, r.info.run_id, "val/AP11")]
        assert steps == sorted(set(steps)), steps  # no repeats
        assert (r.info.status, r.data.tags["tao.verdict"]) in (("KILLED", "pruned"), ("FINISHED", "succeeded"))
        assert r.info.status == "FINISHED" or max(steps) < 4
    version = client.get_model_version("bevfusion-test", "1")
    assert version.run_id == best.info.run_id


def test_through_the_mcp_server_get_job_shows_the_run_url(kitti_converted: Path, mlflow_server: MlflowServer):
    """The stdio server (its stdout is the protocol: MLflow must print nothing there) tracks from the env."""
    env = {k: v for k, v in os.environ.items() if k.startswith(("TAO_BEVFUSION_", "PATH", "HOME"))}
    env.update(TAO_BEVFUSION_MLFLOW_URI=mlflow_server.uri, TAO_BEVFUSION_MLFLOW_EXPERIMENT="via-mcp")
    params = StdioServerParameters(command=sys.executable, args=SERVE_ARGS, env=env, cwd=str(REPO))
    args = {"action": "train", "data_root": str(kitti_converted), "backend": "local", "automl_policy": "off",
            "overrides": {"num_epochs": 2, "batch_size": 1}, "env": {"FAKE_TAO_ITER_SECONDS": "0.05"}}

    async def go() -> dict[str, Any]:
        async with Client(params) as c:
            job_id = (await c.call_tool("run_action", args)).structured_content["job_id"]
            deadline = time.monotonic() + 180
            while True:
                r = await c.call_tool("get_job", {"job_id": job_id})
                s = r.structured_content
                if s["state"] == "succeeded" and (s.get("tracking") or {}).get("run_url"):
                    assert "MLflow run: " in r.content[0].text
                    return dict(s)
                assert time.monotonic() < deadline and s["state"] in ("pending", "running", "succeeded"), s
                await anyio.sleep(0.5)

    s = anyio.run(go)
    run = the_run(MlflowClient(mlflow_server.uri), "via-mcp", s["job_id"])
    assert s["tracking"]["run_id"] == run.info.run_id and run.data.params["epochs"] == "2"


def test_without_the_mlflow_client_the_warning_says_what_to_install(monkeypatch: pytest.MonkeyPatch):
    from tao_bevfusion.tracking import sender

    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)  # import fails as when the extra is missing
    monkeypatch.setattr(sender, "_clients", {})
    with pytest.raises(sender.Refused, match=r"pip install 'tao-bevfusion\[mlflow\]'"):
        sender.client_for("http://127.0.0.1:1")
