"""Readers and the verdict, without an engine: the contract's §6 table row by row, and parser edge cases."""

import json
from pathlib import Path

import pytest
from tao_bevfusion.evidence.artifacts import check_artifacts
from tao_bevfusion.evidence.models import Cursor, Evidence, Findings, RunMetrics, RunProgress
from tao_bevfusion.evidence.patterns import error_matches
from tao_bevfusion.evidence.scan import scan_log, scan_status
from tao_bevfusion.evidence.verdict import decide


def _decide(exit_code, oom_killed, cancel_requested, container_missing, findings, present, missing):
    return decide(Evidence(exit_code=exit_code, oom_killed=oom_killed, cancel_requested=cancel_requested,
                           container_missing=container_missing, findings=Findings.model_validate(findings),
                           present=present, missing=missing))

FIN = {"status": {"records": 4, "failures": [], "started": True, "finished": "Train finished successfully."}}


def _f(**status):
    return {"status": {"records": 3, "failures": [], "started": True, "finished": None, **status}}


@pytest.mark.parametrize("row,kw,outcome", [
    (1, dict(exit_code=0, findings={**FIN, "footer": "PASS"}), "succeeded"),
    (2, dict(exit_code=0, findings={**_f(interrupted=True, failures=["Train was interrupted"]), "footer": "PASS"}),
     "failed"),
    (3, dict(exit_code=0, findings={**FIN, "footer": "PASS"}, missing=["epoch_5.pth"]), "failed"),
    (4, dict(exit_code=0, findings={**_f(failures=["CUDA out of memory"]), "footer": "FAIL"}), "failed"),
    (5, dict(exit_code=0, findings={"status": {"records": 0, "failures": []}, "footer": "FAIL"}), "failed"),
    (6, dict(exit_code=0, findings={**FIN, "footer": "FAIL", "sigsegv": True}), "succeeded_with_teardown_crash"),
    (7, dict(exit_code=0, findings={**_f(), "footer": "FAIL", "sigkill": True}), "failed"),
    (8, dict(exit_code=1, findings={}), "failed"),
    (10, dict(exit_code=137, oom_killed=True, findings=_f()), "killed"),
    (10, dict(exit_code=137, cancel_requested=True, findings=_f()), "canceled"),
    (10, dict(exit_code=137, findings=_f()), "killed"),
    (7, dict(exit_code=0, oom_killed=True, findings={**_f(), "footer": "FAIL", "sigkill": True}), "killed"),
    (11, dict(exit_code=125, findings={}), "failed"),
    (0, dict(exit_code=None, container_missing=True, findings=_f()), "lost"),
    (0, dict(exit_code=None, container_missing=True, cancel_requested=True, findings=_f()), "canceled"),
])
def test_verdict_table(row, kw, outcome):
    args = {"exit_code": None, "oom_killed": False, "cancel_requested": False, "container_missing": False,
            "findings": {}, "present": ["a"], "missing": [], **kw}
    v = _decide(**args)
    assert v.outcome == outcome, (row, v)
    if row == 5:
        assert "before the action started" in v.reason
    if row == 6:
        assert v.usable_artifacts == ["a"]


def test_exit_code_zero_alone_is_never_success():
    v = _decide(0, False, False, False, {"status": {"records": 1, "failures": [], "started": True}}, [], [])
    assert v.outcome == "failed"


def test_status_reader_is_incremental_tolerant_and_leaves_partial_lines(tmp_path: Path):
    path = tmp_path / "status.json"
    lines = [
        {"status": "STARTED", "message": "Starting Bevfusion train."},
        {"mode": "train", "cur_iter": 1, "loss": float("nan"), "lr": 1e-4, "status": "RUNNING"},
        {"mode": "val", "epoch": 1, "AP11": 12.5, "AP40": 10.0, "status": "RUNNING"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"status": "FAILURE", "mess\n'
                    + "not json\n" + '{"mode": "val", "epo')
    cursor, findings, progress, metrics = Cursor(), Findings(), RunProgress(), RunMetrics()
    scan_status(path, cursor, findings, progress, metrics)
    assert progress.cur_iter == 1 and progress.loss != progress.loss  # NaN kept, not a crash
    assert metrics.best_AP11 == 12.5 and findings.status.unparsed == 1
    first = cursor.status_offset
    assert first == len(path.read_bytes()) - len('{"mode": "val", "epo')
    with open(path, "a") as fh:
        fh.write('ch": 2, "AP11": 20.0, "AP40": 18.0, "status": "RUNNING"}\n')
        fh.write(json.dumps({"status": "RUNNING", "message": "Train finished successfully."}) + "\n")
    scan_status(path, cursor, findings, progress, metrics)
    assert metrics.best_epoch == 2 and findings.status.finished == "Train finished successfully."
    assert findings.status.records == 7 and not findings.status.failures


def test_log_scanner_handles_carriage_returns_and_glued_footer(tmp_path: Path):
    log = tmp_path / "job.log"
    log.write_bytes(b"\rEpoch(train)  [2][ 3/10]  lr: 1e-4  loss: 2.0\rEpoch(train)  [2][ 4/10]  loss: 1.9"
                    b"[2026-11-24 18:00:41,123 - TAO Toolkit - root - WARNING] Execution status: FAIL\n"
                    b"Traceback (most recent call last):\ntorch.cuda.OutOfMemoryError: CUDA out of memory.\n"
                    b"Telemetry data couldn't be sent, but the command ran successfully.\n")
    cursor, findings, progress = Cursor(), Findings(), RunProgress()
    scan_log(log, cursor, findings, progress)
    assert findings.footer == "FAIL" and progress.epoch == 2 and progress.epoch_iteration == 4
    assert findings.traceback and "OutOfMemoryError" in (findings.last_error_line or "")
    errs = {e.pattern: e for e in error_matches(findings.matches)}
    assert errs["cuda_oom"].evidence.startswith("torch.cuda.OutOfMemoryError")
    assert errs["telemetry"].severity == "harmless"
    assert next(e.severity for e in error_matches(findings.matches)) == "error"


def test_log_scanner_reads_only_appended_bytes_and_caps_first_look(tmp_path: Path, monkeypatch):
    import tao_bevfusion.evidence.scan as scan

    monkeypatch.setattr(scan, "MAX_SCAN", 1000)
    log = tmp_path / "job.log"
    log.write_bytes(b"x" * 5000 + b"\nExecution status: PASS\n")
    cursor, findings = Cursor(), Findings()
    scan_log(log, cursor, findings, RunProgress())
    assert findings.skipped_bytes == log.stat().st_size - 1000 and findings.footer == "PASS"
    with open(log, "ab") as fh:
        fh.write(b"partial progress record without newline")
    before = cursor.log_offset
    scan_log(log, cursor, findings, RunProgress())
    assert cursor.log_offset == before  # the unfinished record waits for its end
    scan_log(log, cursor, findings, RunProgress(), final=True)
    assert cursor.log_offset == log.stat().st_size


def test_train_artifacts_need_the_final_epoch_and_pointer(tmp_path: Path):
    work = tmp_path / "r" / "train"
    work.mkdir(parents=True)
    (work / "epoch_1.pth").write_text("{}")
    (work / "last_checkpoint").write_text("/results/r/train/epoch_1.pth")
    present, missing = check_artifacts("train", tmp_path / "r", tmp_path, 0, 2, Findings())
    assert str(work / "epoch_2.pth") in missing and any("expected epoch_2.pth" in m for m in missing)
    (work / "epoch_2.pth").write_text("{}")
    (work / "last_checkpoint").write_text("/results/r/train/epoch_2.pth")
    present, missing = check_artifacts("train", tmp_path / "r", tmp_path, 0, 2, Findings())
    assert not missing and str(work / "epoch_2.pth") in present


def test_running_epoch_comes_from_the_global_iteration():
    from tao_bevfusion.jobs.store import Job
    from tao_bevfusion.present.summary import summarize

    job = Job(id="j" + "a" * 16, action="train", backend="local", state="running", spec_path="/s", spec_sha256="x",
              results_dir="/nonexistent", data_root="/d", created_at=0, updated_at=0, meta={"num_epochs": 3},
              progress={"epoch": 1, "cur_iter": 3, "iters_per_epoch": 2, "loss": 1.5})
    s = summarize(job)
    assert s.progress.epoch == 2 and s.progress.max_epochs == 3 and "epoch 2/3" in s.digest
    assert any("get_job" in step for step in s.next_steps)


def test_docker_log_sync_keeps_interleaved_lines_and_never_duplicates():
    import io

    from tao_bevfusion.backends.logsync import LogWindow, RecordCap

    stream = [b"2026-12-01T10:00:00.5Z first\n", b"2026-12-01T10:00:01.900000001Z stdout later\n",
              b"2026-12-01T10:00:01.9Z stderr footer stamped earlier\n"]
    out = io.BytesIO()
    w = LogWindow(0, set(), RecordCap(0))
    for line in stream:
        w.append(out, line)
    assert out.getvalue().count(b"\n") == 3 and b"footer" in out.getvalue()
    again = io.BytesIO()  # the next sync re-reads the boundary second (`since` is whole seconds)
    w2 = LogWindow(w.top, set(w.top_seen), RecordCap(0))
    for line in [*stream[1:], b"2026-12-01T10:00:01.95Z new line\n"]:
        w2.append(again, line)
    assert again.getvalue() == b"new line\n"
