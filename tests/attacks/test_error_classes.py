"""Issue 17 item 19 through the MCP client: the engine's trouble is an engine error (the same call works once
it is fixed), never an input error."""

from pathlib import Path

import pytest
from tao_bevfusion.backends import docker as dockerbackend

from tests.attacks.helpers import mcp_call

pytestmark = [pytest.mark.attack]


def test_an_unreachable_docker_engine_is_an_engine_error(workspace: Path, monkeypatch: pytest.MonkeyPatch):
    from tao_bevfusion.jobs.context import app_context

    monkeypatch.setenv("DOCKER_HOST", f"unix://{workspace}/no-engine.sock")
    monkeypatch.setattr(dockerbackend, "_CLIENTS", {})
    store = app_context().store
    job = store.create(action="train", backend="docker", spec_path="/s", spec_sha256="x", results_dir="/r",
                       data_root="/d")
    store.update(job.id, state="running", handle="0123abcd")
    r = mcp_call("get_job", {"job_id": job.id})
    text = r.content[0].text
    assert r.is_error and "engine error (job records kept)" in text and "ENGINE" not in text.split(":")[0], text
    assert store.get(job.id).state == "running"
