"""The house of issue 8: the store migrates old databases, backends plug in through the registry and declare
what they can do, multi-node requests are refused where no backend can serve them, and adapters never
branch on a tool's or a backend's name."""

import json
import re
import sqlite3
from pathlib import Path
from typing import ClassVar

import pytest
from tao_bevfusion.backends import registry
from tao_bevfusion.backends.base import Backend, BackendStatus, Capabilities, Check, LaunchRequest, Plan
from tao_bevfusion.core.errors import InputError
from tao_bevfusion.jobs.launch import RunActionInput
from tao_bevfusion.jobs.store import MIGRATIONS, JobStore
from tao_bevfusion.service.jobs import get_job, list_jobs
from tao_bevfusion.service.run import run_action

from tests.conftest import DATA, REPO, copy_sample


def _old_database(home: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(home / "jobs.db")
    conn.executescript((DATA / "jobs_db_ee6f502.sql").read_text())
    conn.close()


def test_a_database_of_the_previous_release_is_migrated_with_nothing_lost(workspace: Path):
    home = workspace / "home"
    _old_database(home)
    before = sqlite3.connect(home / "jobs.db").execute("SELECT id, state FROM jobs ORDER BY id").fetchall()
    assert len(before) == 3
    store = JobStore(home)
    assert store.applied_migrations() == [name for name, _ in MIGRATIONS]
    listed = {j.job_id: j for j in list_jobs(limit=10)}
    assert sorted((k, v.state) for k, v in listed.items()) == sorted(before)
    assert {j.kind for j in listed.values()} == {"run"}
    train = next(j for j in listed.values() if j.action == "train")
    summary = get_job(train.job_id)
    assert summary.verdict and summary.verdict.outcome == "succeeded"
    assert summary.metrics["best_AP11"] == 25.0 and summary.progress.max_epochs == 2
    evaluate = next(j for j in listed.values() if j.action == "evaluate")
    assert evaluate.parent_job_id == train.job_id and get_job(evaluate.job_id).metrics["AP11"] == 25.0
    JobStore(home)  # a second open (another process) applies nothing twice
    assert JobStore(home).applied_migrations() == [name for name, _ in MIGRATIONS]


def _fd7cc36_state(ws: Path) -> Path:
    """The state dir fd7cc36 left (a convert, a train, an evaluate and a 2-trial study, all on the local
    backend), moved from where it was recorded to `ws`."""
    recorded = json.loads((DATA / "study_fd7cc36.json").read_text())
    old = recorded["recorded_under"]
    home = ws / "home"
    home.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(home / "jobs.db")
    conn.executescript((DATA / "jobs_db_fd7cc36.sql").read_text().replace(old, str(ws)))
    conn.close()
    for rel, text in recorded["files"].items():
        (ws / rel).parent.mkdir(parents=True, exist_ok=True)
        (ws / rel).write_text(text.replace(old, str(ws)))
    return home


def test_a_database_of_fd7cc36_with_a_run_and_a_study_opens_with_every_job_readable(workspace: Path):
    home = _fd7cc36_state(workspace)
    before = sqlite3.connect(home / "jobs.db").execute("SELECT id, kind, state FROM jobs ORDER BY id").fetchall()
    assert len(before) == 6 and {k for _, k, _ in before} == {"run", "study"}
    store = JobStore(home)
    assert store.applied_migrations() == [name for name, _ in MIGRATIONS]
    listed = {j.job_id: j for j in list_jobs(limit=20)}
    assert sorted((k, v.kind, v.state) for k, v in listed.items()) == sorted(before)
    for job_id in listed:
        summary = get_job(job_id)
        assert summary.job_id == job_id and summary.verdict and summary.verdict.outcome == "succeeded"
    study = next(j for j in listed.values() if j.kind == "study")
    status = get_job(study.job_id).study
    assert status is not None and status.progress.completed == 2 and status.best is not None
    trials = [j for j in listed.values() if j.owner_id == study.job_id]
    assert len(trials) == 2 and status.best.job_id in {t.job_id for t in trials}
    evaluate = next(j for j in listed.values() if j.action == "evaluate")
    assert get_job(evaluate.job_id).metrics["AP11"] > 0


class _FakeCluster(Backend):
    """A third-party backend: one module and one registry line."""

    name = "fakecluster"
    capabilities: ClassVar[Capabilities] = Capabilities(
        maps_paths_into_container=True, multi_node=True, gpu_pinning=False, reattach_by_job_id=False)

    def plan(self, request: LaunchRequest) -> Plan:
        return Plan(backend=self.name, job_id=request.job_id, command=["bevfusion", request.subtask],
                    equivalent_cli=["submit", f"--nodes={request.num_nodes}"], mounts=request.mounts, env={})

    def preflight(self, plan: Plan) -> list[Check]:
        return []

    def submit(self, plan: Plan) -> str:
        raise AssertionError("dry runs only")

    def poll(self, handle: str) -> BackendStatus:
        return BackendStatus(state="missing")

    def cancel(self, handle: str, force: bool) -> None:
        return None


def test_a_new_backend_is_one_class_and_a_registry_line(workspace: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(registry._REGISTERED, "fakecluster", f"{__name__}:_FakeCluster")
    assert "fakecluster" in registry.names() and "fakecluster" in registry.multi_node_backends()
    root = copy_sample(workspace / "kitti")
    r = run_action(RunActionInput(action="dataset_convert", data_root=str(root), backend="fakecluster",
                                  num_nodes=2, dry_run=True))
    assert r.state == "planned" and r.plan is not None and r.plan.equivalent_cli == ["submit", "--nodes=2"]
    assert r.plan.backend == "fakecluster" and any(m.container == "/data" for m in r.plan.mounts)


def test_num_nodes_above_one_is_refused_on_single_node_backends(workspace: Path):
    root = copy_sample(workspace / "kitti")
    for backend in ("docker", "local"):
        with pytest.raises(InputError) as exc:
            run_action(RunActionInput(action="dataset_convert", data_root=str(root), backend=backend, num_nodes=2,
                                      dry_run=True))
        text = str(exc.value)
        assert "num_nodes" in text and f"the {backend} backend runs one node" in text and "slurm" in text
    assert not (workspace / "home" / "jobs.db").exists() or not JobStore(workspace / "home").query()


def test_unknown_backend_names_the_registered_ones(workspace: Path):
    root = copy_sample(workspace / "kitti")
    with pytest.raises(InputError, match=r"unknown backend 'nope'.*docker.*local"):
        run_action(RunActionInput(action="dataset_convert", data_root=str(root), backend="nope", dry_run=True))


def test_no_module_outside_the_backends_checks_a_backend_or_tool_name():
    offenders = []
    pattern = re.compile(r"""(backend|\.name)\s*==\s*["'](docker|local|slurm|kubernetes)["']|"""
                         r"""t\.name\s*(==|in)\s*[("']""")
    for path in (REPO / "tools").rglob("*.py"):
        if "backends" in path.parts:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not offenders, offenders


def test_docker_only_options_are_validated_by_the_docker_backend(workspace: Path):
    root = copy_sample(workspace / "kitti")
    with pytest.raises(InputError, match=r"backend_options\.network"):
        run_action(RunActionInput(action="dataset_convert", data_root=str(root), backend="docker", dry_run=True,
                                  backend_options={"network": "overlay"}))
    with pytest.raises(InputError, match=r"backend_options\.network.*the local backend takes no options"):
        run_action(RunActionInput(action="dataset_convert", data_root=str(root), backend="local", dry_run=True,
                                  backend_options={"network": "host"}))
