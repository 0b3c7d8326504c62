"""Smaller gaps (issue 11): number/type holes in specs, unvalidated GPU ids, settings that crash or widen
the roots, job ids, and every way the encryption key leaks."""

import json
import time
from pathlib import Path

import pytest

from tests.attacks.helpers import call, cli, finish, launch, mcp_call, mcp_resource, refused, text_of, wait_until

pytestmark = [pytest.mark.attack]
KEY = "Zq7-secret-KEY-9x4"


def test_nan_in_free_form_spec_dict_via_cli(raw_root: Path):
    """The CLI's JSON parser accepts NaN/Infinity; a spec must never carry them (refused, rc 2)."""
    ov = '{"num_epochs": 10, "train.lr_scheduler": [{"type": "CosineAnnealingLR", "T_max": 10, "begin": 0, ' \
         '"end": 10, "by_epoch": true, "eta_min": NaN, "pad": Infinity}]}'
    rc, out, _err = cli("build-spec", "--action", "train", "--data-root", str(raw_root), "--overrides", ov)
    assert rc == 2, (rc, out[-300:])


def test_lr_schedule_with_string_end_is_checked(raw_root: Path):
    text = refused("build_spec", action="train", data_root=str(raw_root), overrides={
        "num_epochs": 4, "train.lr_scheduler": [{"type": "CosineAnnealingLR", "T_max": 4, "begin": 0,
                                                 "end": "forever", "by_epoch": True}]})
    assert "end" in text


@pytest.mark.parametrize("overrides", [
    {"train." + "a." * 4000 + "b": 1},
    {"train.num_epochs": 2, **{"x" * 100_000: 1}},
])
def test_deep_or_long_dotted_overrides_are_tool_errors(raw_root: Path, overrides):
    r = mcp_call("build_spec", {"action": "train", "data_root": str(raw_root), "overrides": overrides})
    assert r.is_error and "RecursionError" not in r.content[0].text and len(r.content[0].text) < 8192


def _nested(depth: int) -> dict:
    nested: dict = {"leaf": 1}
    for _ in range(depth):
        nested = {"n": nested}
    return {"train": nested}


def test_deeply_nested_override_is_a_tool_error(raw_root: Path):
    """100 levels through MCP (the client itself refuses to serialise ~900), 900 through the CLI's JSON."""
    r = mcp_call("build_spec", {"action": "train", "data_root": str(raw_root), "overrides": _nested(100)})
    assert r.is_error and "Recursion" not in r.content[0].text and len(r.content[0].text) < 8192
    rc, _out, err = cli("build-spec", "--action", "train", "--data-root", str(raw_root), "--overrides",
                        json.dumps(_nested(900)))
    assert rc == 2 and "Recursion" not in err and len(err) < 8192, (rc, err[-300:])


@pytest.mark.parametrize("gpus", [["0; reboot"], ["9" * 100_000], ["-1"], ["0", "0"]])
def test_gpu_ids_are_validated(raw_root: Path, gpus):
    """Host GPU ids are small decimal integers (or GPU UUIDs), unique; anything else is refused."""
    r = mcp_call("run_action", {"action": "dataset_convert", "data_root": str(raw_root), "dry_run": True,
                                "gpus": gpus})
    assert r.is_error and "gpus" in r.content[0].text and len(r.content[0].text) < 8192


def test_gpus_not_matching_num_gpus_is_flagged(raw_root: Path):
    """gpus=['0','1'] for a 1-GPU train: refused (or a failing preflight) rather than silently mismatched."""
    r = mcp_call("run_action", {"action": "train", "data_root": str(raw_root), "dry_run": True,
                                "automl_policy": "off", "gpus": ["0", "1"], "num_gpus": 1})
    if not r.is_error:
        failed = [c for c in r.structured_content["plan"]["preflight"] if not c["ok"] and "gpu" in c["name"]]
        assert failed, r.structured_content["plan"]["preflight"]


def test_host_path_with_colon_is_refused_before_any_record(workspace: Path, raw_root: Path):
    """Docker bind specs split on ':'; refuse such host paths in build_spec, before a job record exists."""
    odd = workspace / "kitti:odd"
    raw_root.rename(odd)
    text = refused("build_spec", action="train", data_root=str(odd))
    assert "':'" in text or "colon" in text.lower()
    assert call("list_jobs").jobs == []


def test_memlock_unlimited_is_accepted(workspace: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TAO_BEVFUSION_MEMLOCK", "unlimited")
    rc, _out, err = cli("list-jobs")
    assert rc == 0, err


def test_roots_slash_is_refused(workspace: Path, monkeypatch: pytest.MonkeyPatch):
    """TAO_BEVFUSION_ROOTS=/ would allow every path: '/' never becomes a root (as the default already does)."""
    monkeypatch.setenv("TAO_BEVFUSION_ROOTS", "/")
    rc, out, err = cli("check-dataset", "--data-root", "/etc", "--action", "dataset_convert")
    assert rc == 2 and "root" in err.lower(), (rc, out[:200], err[:200])


def test_job_id_with_trailing_newline_is_refused(workspace: Path):
    r = mcp_call("get_job", {"job_id": "j0123456789abcdef\n"})
    assert r.is_error and "not a job id" in r.content[0].text


def test_encryption_key_is_not_taken_on_argv(raw_root: Path, tmp_path: Path):
    """argv is world-readable (/proc/*/cmdline). Decision: the CLI takes --encryption-key-file PATH (or the
    TAO_BEVFUSION_ENCRYPTION_KEY environment variable) and has no --encryption-key option."""
    rc, _, _ = cli("build-spec", "--action", "train", "--data-root", str(raw_root), "--encryption-key", KEY)
    assert rc == 2
    keyfile = tmp_path / "key"
    keyfile.write_text(KEY + "\n")
    rc, out, err = cli("build-spec", "--action", "train", "--data-root", str(raw_root), "--encryption-key-file",
                       str(keyfile), "--json")
    assert rc == 0, err
    assert KEY not in out


def test_too_long_key_is_not_echoed(raw_root: Path):
    long_key = "LEAK" + "k" * 700
    r = mcp_call("build_spec", {"action": "train", "data_root": str(raw_root), "encryption_key": long_key})
    assert r.is_error and "LEAKkkkk" not in text_of(r)


def _keyed_running_job(converted: Path, epochs: int = 3, output_path: str | None = None):
    kw = {"overrides": {"num_epochs": epochs, "batch_size": 1}, "env": {"FAKE_TAO_ITER_SECONDS": "0.7"},
          "encryption_key": KEY}
    if output_path:
        kw["output_path"] = output_path
    r = launch("train", converted, **kw)
    wait_until(lambda: call("get_job", job_id=r.job_id).progress.iteration, timeout=60)
    return r.job_id


@pytest.mark.docker
def test_key_at_column_290_of_an_error_line_does_not_leak(converted: Path):
    """Redact first, then cut: a key past the 300-char evidence cut-off must not leave its prefix behind.
    The line enters as a status.json FAILURE record (the container's own channel; job.log is rewritten
    from the engine's logs, so an appended line would not survive)."""
    job_id = _keyed_running_job(converted, epochs=3)
    item = next(j for j in call("list_jobs").jobs if j.job_id == job_id)
    head = "torch.OutOfMemoryError: CUDA out of memory. "  # a known pattern: the line becomes evidence
    with open(Path(item.results_dir) / "train" / "status.json", "a") as fh:
        fh.write(json.dumps({"status": "FAILURE", "message": head + "p" * (290 - len(head)) + KEY}) + "\n")
    s = finish(job_id)
    assert any(e.pattern == "cuda_oom" for e in s.errors), s.errors
    evidence = " ".join(e.evidence for e in s.errors)
    assert KEY[:6] not in evidence + mcp_call("get_job", {"job_id": job_id}).content[0].text


@pytest.mark.docker
def test_rewriting_the_spec_does_not_unredact_older_logs(converted: Path, workspace: Path):
    """Redaction uses the key recorded for the job, not whatever the spec file says today."""
    out = str(workspace / "home" / "specs" / "fixed" / "train.yaml")
    job_id = _keyed_running_job(converted, epochs=1, output_path=out)
    finish(job_id)
    with open(workspace / "home" / "jobs" / job_id / "job.log", "a") as fh:
        fh.write(f"echo of the key {KEY}\n")
    assert "already exists" in refused("build_spec", action="train", data_root=str(converted), output_path=out,
                                       overrides={"num_epochs": 1})  # issue 17: never overwritten by a build
    Path(out).write_text(Path(out).read_text().replace(KEY, "a-different-key-now"))  # edited by hand instead
    page = call("get_job_logs", job_id=job_id)
    assert KEY not in page.text


@pytest.mark.docker
def test_key_in_verdict_reason_and_status_resource_is_redacted(converted: Path):
    job_id = _keyed_running_job(converted, epochs=3)
    item = next(j for j in call("list_jobs").jobs if j.job_id == job_id)
    with open(Path(item.results_dir) / "train" / "status.json", "a") as fh:
        fh.write(json.dumps({"status": "FAILURE", "message": f"bad encryption key {KEY}"}) + "\n")
    time.sleep(0.3)
    s = finish(job_id)
    assert KEY not in s.verdict.reason and KEY not in s.model_dump_json()
    res = mcp_resource(f"tao-bevfusion://jobs/{job_id}/status")
    assert KEY not in "".join(getattr(c, "text", "") for c in res.contents)


def test_a_home_of_an_unknown_user_is_an_input_error_not_a_crash(workspace):
    """Found by the path fuzzer: Path('~name').expanduser() raises RuntimeError for a user the host lacks."""
    from tao_bevfusion import api
    from tao_bevfusion.core.errors import InputError

    with pytest.raises(InputError, match="cannot expand"):
        api.call("check_dataset", {"data_root": "~nosuchuser0/kitti", "action": "train"})
