"""Issue 10 items 5 and 7: every warning reaches the text, preflight figures come from the launched spec,
one state word per line, max_epochs only for train, next steps with real values."""

from pathlib import Path

from tao_bevfusion import api
from tao_bevfusion.backends.base import Check
from tao_bevfusion.core.settings import Settings
from tao_bevfusion.jobs.notes import spec_preflight, warning_lines
from tao_bevfusion.jobs.store import JobStore
from tao_bevfusion.present.summary import summarize

from tests.conftest import copy_sample


def test_check_dataset_digest_keeps_warnings_next_to_errors(workspace: Path):
    root = copy_sample(workspace / "kitti")
    (root / "training" / "label_2" / "000008.txt").unlink()  # an error for convert
    report, text = api.call("check_dataset", {"data_root": str(root), "action": "train"})
    warned = [p for p in report.problems if p.severity == "warning"]
    errors = [p for p in report.problems if p.severity == "error"]
    assert errors and warned, report.problems
    assert "[error]" in text and "[warning]" in text and warned[0].code in text


def test_dry_run_digest_lists_overrides_and_build_warnings(workspace: Path):
    root = copy_sample(workspace / "kitti")
    r, text = api.call("run_action", {"action": "train", "data_root": str(root), "automl_policy": "off",
                                      "backend": "local", "dry_run": True, "overrides": {"num_epochs": 3}})
    assert r.state == "planned" and r.overrides == [{"path": "train.num_epochs", "value": 3}]
    assert "your overrides in the spec: train.num_epochs=3" in text
    assert "warning: no swin_checkpoint" in text  # lost on this path before


def test_preflight_gpu_advice_uses_the_launched_batch_size():
    checks = [Check(name="gpu_memory", ok=True, severity="warning", message="GPUs ['0'] have < 24 GB; lower "
                    "batch_size to 1-2. see hardware"), Check(name="gpu_count", ok=True, severity="warning",
                                                            message="1 GPU: a smoke run only.")]
    spec = {"train": {"num_gpus": 1}, "dataset": {"train_dataset": {"batch_size": 4}}}
    out = spec_preflight(checks, spec, "train")
    assert "the spec's batch_size is 4 per GPU x 1 GPU(s): lower it" in out[0].message
    assert "the spec runs on 1 GPU(s)" in out[1].message
    small = spec_preflight(checks, {**spec, "dataset": {"train_dataset": {"batch_size": 1}}}, "train")
    assert "batch_size is 1 per GPU x 1 GPU(s): fits the advice" in small[0].message
    lines = warning_lines(["a"] * 12, out)
    assert len(lines) == 9 and lines[-1].startswith("(+6 more")


def test_one_state_word_max_epochs_only_for_train_and_real_next_steps(workspace: Path):
    store = JobStore(Settings.from_env().home)
    for action in ("dataset_convert", "evaluate"):
        job = store.create(action=action, backend="local", spec_path="/s.yaml", spec_sha256="x",
                           results_dir=str(workspace / action), data_root=str(workspace), meta={"num_epochs": 10})
        store.update(job.id, state="succeeded", verdict={"outcome": "succeeded", "reason": "test record"})
        s = summarize(store.get(job.id))
        assert s.progress.max_epochs is None and "succeeded (succeeded)" not in api.job_digest(s)
        assert not any("N}" in step or "<the same .pth>" in step for step in s.next_steps), s.next_steps
    _, text = api.call("list_jobs", {})
    assert all(line.split()[2] == "succeeded" and line.count("succeeded") == 1 for line in text.splitlines())
