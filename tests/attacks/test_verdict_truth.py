"""Lies about a job (issue 11): a verdict that contradicts what the job did, or a job that cannot be read."""

import json
import time
from pathlib import Path

import pytest

from tests.attacks.helpers import call, finish, launch, mcp_call, refused, wait_until

pytestmark = [pytest.mark.attack]
SLOW = {"FAKE_TAO_ITER_SECONDS": "0.7"}


@pytest.mark.parametrize("key", ["train.results_dir", "evaluate.results_dir", "inference.results_dir"])
def test_action_results_dir_override_is_managed(raw_root: Path, key: str):
    """`<action>.results_dir` would move the outputs away from the folder the verdict checks (and the
    container is removed with them): refused like the top-level results_dir, naming the key."""
    action = key.split(".")[0]
    args = {"action": action, "data_root": str(raw_root), "overrides": {key: "/results/elsewhere"}}
    if action != "train":
        ckpt = raw_root.parent / "ptm" / "epoch_2.pth"
        ckpt.parent.mkdir(exist_ok=True)
        ckpt.write_text("{}")
        args["checkpoint"] = str(ckpt)
    text = refused("build_spec", **args)
    assert key in text


def _status_file(job_id: str) -> Path:
    item = next(j for j in call("list_jobs").jobs if j.job_id == job_id)
    return Path(item.results_dir) / "train" / "status.json"


def _running_train(converted: Path, epochs: int = 3, after_iter: int = 1):
    r = launch("train", converted, overrides={"num_epochs": epochs, "batch_size": 1}, env=SLOW)
    status = _status_file(r.job_id)
    wait_until(lambda: status.is_file() and status.stat().st_size > 0 and
               (call("get_job", job_id=r.job_id).progress.iteration or 0) >= after_iter, timeout=60)
    return r.job_id, status


@pytest.mark.docker
def test_status_json_truncated_mid_run_keeps_a_good_verdict(converted: Path):
    """Truncation of status.json late in the run (the reader's offset is then past everything still to
    come): the train still succeeds; the reader notices the shrink and rereads from the start."""
    job_id, status = _running_train(converted, epochs=4, after_iter=5)
    status.write_bytes(b"")
    s = finish(job_id)
    assert s.verdict.outcome == "succeeded", s.verdict


@pytest.mark.docker
@pytest.mark.parametrize("line", [b'["finished successfully", "FAILURE"]\n', b'"STARTED"\n', b"42\n",
                                  b'null\n'])
def test_non_object_status_line_does_not_stick_the_job(converted: Path, line: bytes):
    """A valid-JSON, non-object line (even one holding a marker word) is skipped and counted; the job ends."""
    job_id, status = _running_train(converted, epochs=2)
    with open(status, "ab") as fh:
        fh.write(line)
    r = mcp_call("get_job", {"job_id": job_id})
    assert not r.is_error, r.content[0].text
    s = finish(job_id)
    assert s.state == "succeeded", s.verdict


@pytest.mark.docker
def test_odd_types_in_status_record_do_not_break_get_job(converted: Path):
    """A final record with odd types ("loss": "abc", "epoch": {}) must not break get_job for that job."""
    job_id, status = _running_train(converted, epochs=2)
    bad = {"mode": "train", "epoch": {"x": 1}, "cur_iter": "many", "max_epoch": [], "loss": "abc",
           "status": "RUNNING", "AP11": "high"}
    with open(status, "a") as fh:
        fh.write(json.dumps(bad) + "\n" + json.dumps({**bad, "mode": "val"}) + "\n")
    time.sleep(0.2)
    for _ in range(3):
        r = mcp_call("get_job", {"job_id": job_id})
        assert not r.is_error, r.content[0].text
    finish(job_id)
    r = mcp_call("get_job", {"job_id": job_id})
    assert not r.is_error, r.content[0].text


@pytest.fixture
def wrong_image(standin: str, engine) -> str:
    """A real wrong image: its `bevfusion` dies like a 6.x/7.x image does (exit 1, no status records)."""
    import io

    dockerfile = (f"FROM {standin}\nRUN printf '#!/bin/sh\\necho Traceback \\(most recent call last\\): >&2\\n"
                  "echo \"ModuleNotFoundError: No module named mmdet3d\" >&2\\nexit 1\\n' > /usr/local/bin/bevfusion"
                  " && chmod +x /usr/local/bin/bevfusion\n")
    tag = "tao-bevfusion-wrongimage:test"
    engine.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True)
    return tag


@pytest.mark.docker
def test_wrong_image_headline_is_the_root_cause(converted: Path, wrong_image: str, monkeypatch: pytest.MonkeyPatch):
    """No module named 'mmdet3d' means the wrong image: the verdict says so, not 'spec path or -e missing'."""
    monkeypatch.setenv("TAO_BEVFUSION_TRUSTED_IMAGES", wrong_image)  # the operator trusted it (issue 17)
    s = finish(launch("train", converted, overrides={"num_epochs": 1, "batch_size": 1}, image=wrong_image).job_id)
    assert s.verdict.outcome == "failed"
    assert "spec path" not in s.verdict.reason
    assert "mmdet3d" in s.verdict.reason or "image" in s.verdict.reason.lower(), s.verdict.reason


@pytest.mark.docker
def test_hung_job_is_reported_as_stalled(converted: Path, monkeypatch: pytest.MonkeyPatch):
    """No new log bytes and no status records for TAO_BEVFUSION_STALL_SECONDS: get_job says stalled (likely
    cause + next call) and shows elapsed time. Decision: state stays 'running' (it may recover); the digest
    and next_steps carry the stall, and the structured result has elapsed seconds."""
    monkeypatch.setenv("TAO_BEVFUSION_STALL_SECONDS", "3")
    r = launch("train", converted, overrides={"num_epochs": 1, "batch_size": 1},
               env={"FAKE_TAO_ITER_SECONDS": "40"})
    time.sleep(7)
    res = mcp_call("get_job", {"job_id": r.job_id})
    text = res.content[0].text.lower()
    assert "stall" in text, text
    assert "cancel_job" in text or "get_job_logs" in text
    assert "elapsed" in json.dumps(res.structured_content).lower()
    call("cancel_job", job_id=r.job_id, force=True)
