"""Issue 17, Low 17 and 18: a local-backend job gets an allow-listed environment (not the server's cloud
credentials); a caller's env and image are decided by allow-lists the operator controls."""

import json
import sys
from pathlib import Path

import pytest

from tests.attacks.helpers import finish, mcp_call

pytestmark = pytest.mark.attack
DUMP_ENV = "import json, os; print('ENVNAMES ' + json.dumps(sorted(os.environ)))"


def test_a_local_job_does_not_inherit_the_servers_credentials(raw_root: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "server-cloud-secret")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/root/gcp.json")
    monkeypatch.setenv("SOME_SERVER_SETTING", "x")
    monkeypatch.setenv("TAO_BEVFUSION_LOCAL_CLI", json.dumps([sys.executable, "-c", DUMP_ENV]))
    r = mcp_call("run_action", {"action": "dataset_convert", "data_root": str(raw_root), "backend": "local",
                                "gpus": [], "env": {"OMP_NUM_THREADS": "2"}})
    assert not r.is_error, r.content[0].text
    job_id = r.structured_content["job_id"]
    finish(job_id)
    logs = mcp_call("get_job_logs", {"job_id": job_id}).structured_content["text"]
    names = set(json.loads(logs.split("ENVNAMES ", 1)[1].splitlines()[0]))
    assert {"PATH", "HOME", "OMP_NUM_THREADS", "TELEMETRY_OPT_OUT"} <= names
    assert not names & {"AWS_SECRET_ACCESS_KEY", "GOOGLE_APPLICATION_CREDENTIALS", "SOME_SERVER_SETTING",
                        "TAO_BEVFUSION_HOME", "TAO_BEVFUSION_LOCAL_CLI"}
    assert "server-cloud-secret" not in logs


@pytest.mark.parametrize(("name", "allowed_by_operator"), [("KEYBOARD_LAYOUT", True), ("MY_SETTING", True),
                                                           ("NCCL_NET_PLUGIN", False), ("LD_PRELOAD", False),
                                                           ("AWS_SESSION_TOKEN", False)])
def test_env_is_decided_by_an_allow_list(raw_root: Path, monkeypatch: pytest.MonkeyPatch, name: str,
                                         allowed_by_operator: bool):
    call = {"action": "dataset_convert", "data_root": str(raw_root), "dry_run": True, "gpus": [],
            "env": {name: "1"}}
    r = mcp_call("run_action", call)
    assert r.is_error and f"env.{name}" in r.content[0].text
    monkeypatch.setenv("TAO_BEVFUSION_ENV_ALLOW", f"{name},KEYBOARD_*")
    r = mcp_call("run_action", call)
    assert r.is_error != allowed_by_operator, r.content[0].text
    if allowed_by_operator:
        assert r.structured_content["plan"]["env"][name] == "1"


def test_only_trusted_images_run(raw_root: Path, monkeypatch: pytest.MonkeyPatch):
    call = {"action": "dataset_convert", "data_root": str(raw_root), "dry_run": True, "gpus": [],
            "image": "docker.io/library/alpine:3"}
    r = mcp_call("run_action", call)
    assert r.is_error and "not a trusted image" in r.content[0].text
    assert "TAO_BEVFUSION_TRUSTED_IMAGES" in r.content[0].text
    monkeypatch.setenv("TAO_BEVFUSION_TRUSTED_IMAGES", "docker.io/library/alpine:*")
    r = mcp_call("run_action", call)
    assert not r.is_error and r.structured_content["plan"]["run_kwargs"]["image"] == "docker.io/library/alpine:3"
    default = mcp_call("run_action", {**call, "image": "nvcr.io/nvidia/tao/tao-toolkit:5.5.0-pyt"})
    assert not default.is_error
