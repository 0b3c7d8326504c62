"""A dry run you can submit: run_action(dry_run=true) records no job and returns a plan_id; run_action(plan_id)
submits exactly that plan once; a changed spec, an old plan or extra arguments are refused."""

import json
import os
import sys
import time
from pathlib import Path

import pytest
from tao_bevfusion.core import layout
from tao_bevfusion.core.errors import InputError
from tao_bevfusion.jobs.context import app_context
from tao_bevfusion.jobs.launch import RunActionInput
from tao_bevfusion.jobs.plans import PLAN_TTL
from tao_bevfusion.service.jobs import get_job, list_jobs
from tao_bevfusion.service.run import run_action

from tests.conftest import REPO, copy_sample

STANDIN = REPO / "tests" / "standin" / "bevfusion_standin.py"


@pytest.fixture
def root(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TAO_BEVFUSION_LOCAL_CLI", json.dumps([sys.executable, str(STANDIN)]))
    return copy_sample(workspace / "kitti")


def _dry(root: Path) -> tuple[str, dict]:
    r = run_action(RunActionInput(action="dataset_convert", data_root=str(root), backend="local", dry_run=True))
    assert r.state == "planned" and r.job_id is None and r.plan_id and r.plan is not None
    return r.plan_id, r.plan.model_dump()


def _wait(job_id: str) -> str:
    deadline = time.monotonic() + 60
    while (state := get_job(job_id).state) in ("pending", "running") and time.monotonic() < deadline:
        time.sleep(0.3)
    return state


def test_a_dry_run_records_nothing_and_its_plan_id_submits_exactly_what_was_shown(root: Path):
    plan_id, shown = _dry(root)
    assert list_jobs() == []  # no job recorded by the dry run
    r = run_action(RunActionInput(action="dataset_convert", plan_id=plan_id))
    assert r.job_id == shown["job_id"] and r.plan is not None
    assert r.plan.model_dump() | {"preflight": []} == shown | {"preflight": []}  # same spec, argv, env
    recorded = app_context().store.get(r.job_id)
    assert recorded.spec_path == shown["command"][-1] and _wait(r.job_id) == "succeeded"


def test_a_plan_is_submitted_once(root: Path):
    plan_id, _ = _dry(root)
    first = run_action(RunActionInput(action="dataset_convert", plan_id=plan_id))
    again = run_action(RunActionInput(action="dataset_convert", plan_id=plan_id))
    assert again.job_id == first.job_id and "already submitted" in again.message
    assert len(list_jobs()) == 1


def test_a_plan_whose_spec_changed_is_refused(root: Path):
    plan_id, shown = _dry(root)
    spec = Path(shown["command"][-1])
    spec.write_text(spec.read_text() + "\n# edited\n")
    with pytest.raises(InputError, match="changed since") as err:
        run_action(RunActionInput(action="dataset_convert", plan_id=plan_id))
    assert err.value.problems[0].path == "plan_id" and list_jobs() == []


def test_an_old_plan_is_refused(root: Path):
    plan_id, _ = _dry(root)
    record = layout.plan_record(app_context().settings.home, plan_id)
    saved = json.loads(record.read_text())
    saved["created_at"] -= PLAN_TTL + 1
    record.write_text(json.dumps(saved))
    with pytest.raises(InputError, match="older than") as err:
        run_action(RunActionInput(action="dataset_convert", plan_id=plan_id))
    assert "dry_run=true" in err.value.problems[0].fix


def test_arguments_beside_a_plan_id_are_refused(root: Path):
    plan_id, _ = _dry(root)
    with pytest.raises(InputError) as err:
        run_action(RunActionInput(action="dataset_convert", plan_id=plan_id, backend="docker"))
    assert err.value.problems[0].path == "backend" and list_jobs() == []
    with pytest.raises(InputError, match="dataset_convert plan"):
        run_action(RunActionInput(action="train", plan_id=plan_id))


@pytest.mark.parametrize("bad", ["p123", "../x", "j0123456789abcdef"])
def test_malformed_plan_ids_are_refused_by_the_input_model(bad: str):
    with pytest.raises(ValueError, match="plan_id"):
        RunActionInput(action="train", plan_id=bad)


def test_plan_files_are_private(root: Path):
    plan_id, _ = _dry(root)
    record = layout.plan_record(app_context().settings.home, plan_id)
    assert record.stat().st_mode & 0o077 == 0 and os.stat(record.parent).st_mode & 0o077 == 0
