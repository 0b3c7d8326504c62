"""Issue 17, High 3: secrets are masked by key name at any depth in what a reader sees; the study's
study.json (its encryption_key under `base`) through tao-bevfusion://jobs/<study>/spec over MCP stdio."""

import json
import os
import sys
from pathlib import Path

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mcp import Client, StdioServerParameters
from tao_bevfusion.core.redact import MASK as SECRET_MASK
from tao_bevfusion.core.redact import mask_keys as mask_secrets
from tao_bevfusion.core.secretkeys import is_secret_name, secret_values
from tao_bevfusion.core.settings import Settings

from tests.attacks.helpers import call
from tests.conftest import REPO, SERVE_ARGS

pytestmark = pytest.mark.attack
KEY = "tlt_encode-Study-Key-0xC0FFEE"


def _stdio() -> StdioServerParameters:
    env = {k: v for k, v in os.environ.items() if k.startswith(("TAO_BEVFUSION_", "PATH", "HOME", "DOCKER_"))}
    return StdioServerParameters(command=sys.executable, args=SERVE_ARGS, env=env, cwd=str(REPO))


@pytest.mark.docker
def test_study_spec_resource_masks_the_encryption_key(converted: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TAO_BEVFUSION_AUTOML_TICK", "0.3")
    args = {"action": "train", "data_root": str(converted), "gpus": [], "encryption_key": KEY,
            "env": {"FAKE_TAO_ITER_SECONDS": "0.5"}, "overrides": {"batch_size": 1},
            "automl_settings": {"automl_max_recommendations": 2, "automl_max_concurrent": 1,
                                "automl_max_epochs": 2}}

    async def go() -> tuple[str, str, str]:
        async with Client(_stdio()) as c:
            review = await c.call_tool("run_action", args)
            confirm = {**review.structured_content["review"]["confirm_call"]["arguments"], "encryption_key": KEY}
            started = await c.call_tool("run_action", confirm)
            assert started.structured_content["state"] == "running", started.content[0].text
            study = started.structured_content["job_id"]
            spec = await c.read_resource(f"tao-bevfusion://jobs/{study}/spec")
            job = await c.call_tool("get_job", {"job_id": study})
            await c.call_tool("cancel_job", {"job_id": study})
            return spec.contents[0].text, json.dumps(job.structured_content), study

    spec_text, job_text, study = anyio.run(go)
    assert KEY not in spec_text and "encryption_key: '***'" in spec_text, spec_text[:400]
    assert KEY not in job_text
    study_json = Settings.from_env().home / "runs" / f"study-{study}" / "study.json"
    assert KEY in study_json.read_text()  # the driver needs it, so the owner's file keeps it, 0600
    assert oct(study_json.stat().st_mode & 0o777) == "0o600"


def test_build_spec_result_masks_every_secret_named_key(raw_root: Path):
    built = call("build_spec", action="train", data_root=str(raw_root), encryption_key=KEY)
    assert KEY not in json.dumps(built.model_dump()) and built.spec["encryption_key"] == SECRET_MASK
    assert KEY in Path(built.spec_path).read_text()  # the job itself still gets it


def test_names_that_are_and_are_not_secrets():
    for name in ("encryption_key", "key", "ENCRYPTION_KEY", "aws_secret_access_key", "HF_TOKEN", "password",
                 "db.password", "api-key", "private_key", "credentials"):
        assert is_secret_name(name), name
    for name in ("default_cam_key", "sort_key", "keys", "num_epochs", "checkpoint", "monkey"):
        assert not is_secret_name(name), name


JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                       lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
                           st.sampled_from(["a", "key", "token", "x_password", "cam_key", "b"]), kids, max_size=4),
                       max_leaves=30)


@settings(max_examples=200, deadline=None)
@given(JSONISH, st.text(min_size=1, max_size=12))
def test_mask_secrets_never_lets_a_secret_value_through(tree, secret):
    wrapped = {"outer": [tree, {"nested": {"encryption_key": secret}}]}
    shown = mask_secrets(wrapped)
    assert secret in secret_values(wrapped)
    assert shown["outer"][1]["nested"]["encryption_key"] == SECRET_MASK
    for value in secret_values(shown):
        assert value == SECRET_MASK
