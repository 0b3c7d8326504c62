"""resolve_parent_checkpoint on layouts that break NVIDIA's pickers (contract §10.2-§10.3)."""

import hashlib
import json
from pathlib import Path

import pytest
import yaml
from tao_bevfusion.core.errors import InputError
from tao_bevfusion.core.settings import Settings
from tao_bevfusion.jobs.store import JobStore
from tao_bevfusion.service.specs import build_spec, resolve_parent_checkpoint
from tao_bevfusion.specbuild.build import BuildSpecInput

from tests.conftest import copy_sample


def make_run(root: Path, epochs: list[str], val: dict[int, float] | None = None, finished: bool = True,
             pointer: str | None = None) -> Path:
    train = root / "train"
    train.mkdir(parents=True)
    for name in epochs:
        (train / name).write_text(json.dumps({"epoch": 0}))
    lines = [{"status": "STARTED", "message": "Starting Bevfusion train."}]
    lines += [{"mode": "val", "epoch": e, "AP11": ap, "AP40": ap - 1, "status": "RUNNING"} for e, ap in
              (val or {}).items()]
    if finished:
        lines.append({"status": "RUNNING", "message": "Train finished successfully."})
    (train / "status.json").write_text("".join(json.dumps(x) + "\n" for x in lines))
    if pointer:
        (train / "last_checkpoint").write_text(pointer)
    return root


def make_job(root: Path, state: str = "succeeded", num_epochs: int = 10, action: str = "train",
             spec_path: str = "/s.yaml") -> str:
    store = JobStore(Settings.from_env().home)
    spec_file = Path(spec_path)  # the hash a launch records (a job's spec is read back only while it matches)
    digest = hashlib.sha256(spec_file.read_bytes()).hexdigest() if spec_file.is_file() else "x"
    job = store.create(action=action, backend="docker", spec_path=spec_path, spec_sha256=digest,
                       results_dir=str(root), data_root="/d", meta={"num_epochs": num_epochs},
                       plan={"mounts": [{"host": str(root), "container": "/results/r1", "mode": "rw"}]})
    store.update(job.id, state=state)
    return job.id


def test_directory_numbers_never_count(workspace: Path):
    run = make_run(workspace / "kitti-ep-100" / "best_runs-7", ["epoch_3.pth"])
    c = resolve_parent_checkpoint(results_dir=str(run), choose="final")
    assert c.epoch == 3 and c.path.endswith("kitti-ep-100/best_runs-7/train/epoch_3.pth")


def test_epoch_9_vs_10_and_padded_names(workspace: Path):
    run = make_run(workspace / "r", ["epoch_9.pth", "epoch_10.pth", "epoch_002.pth"],
                   pointer="/results/r1/train/epoch_10.pth")
    jid = make_job(run)
    assert resolve_parent_checkpoint(parent_job_id=jid, choose="latest").epoch == 10
    assert resolve_parent_checkpoint(parent_job_id=jid, choose="final").epoch == 10
    assert resolve_parent_checkpoint(parent_job_id=jid, epoch=2).path.endswith("epoch_002.pth")
    assert [c.epoch for c in resolve_parent_checkpoint(parent_job_id=jid, choose="final").candidates] == [2, 9, 10]


def test_onnx_and_best_named_files_do_not_win(workspace: Path):
    run = make_run(workspace / "r", ["epoch_1.pth", "epoch_2.pth", "epoch_3.pth"], val={1: 10.0, 2: 30.0, 3: 20.0})
    (run / "train" / "model_best.onnx").write_text("x")
    (run / "train" / "best.engine").write_text("x")
    (run / "train" / "last_checkpoint").write_text("/results/r1/train/epoch_3.pth")
    c = resolve_parent_checkpoint(parent_job_id=make_job(run, num_epochs=3))
    assert c.epoch == 2 and c.path.endswith("epoch_2.pth") and "best AP11 = 30.0" in c.method
    assert "default after a succeeded train" in c.method
    assert all(cand.path.endswith(".pth") for cand in c.candidates)


def test_best_ties_go_to_the_higher_epoch(workspace: Path):
    run = make_run(workspace / "r", ["epoch_1.pth", "epoch_2.pth"], val={1: 25.0, 2: 25.0})
    assert resolve_parent_checkpoint(results_dir=str(run), choose="best").epoch == 2


def test_last_checkpoint_is_a_container_path_mapped_to_the_host(workspace: Path):
    run = make_run(workspace / "host-runs" / "j42", ["epoch_1.pth", "epoch_2.pth"],
                   pointer="/workspace/results/train/epoch_1.pth")
    c = resolve_parent_checkpoint(results_dir=str(run), choose="latest")
    assert c.epoch == 1 and c.path == str(run / "train" / "epoch_1.pth")
    assert c.container_path == "/workspace/results/train/epoch_1.pth" and "epoch_2.pth is higher" in c.method


def test_missing_best_epoch_is_reported_not_rounded(workspace: Path):
    run = make_run(workspace / "r", ["epoch_5.pth", "epoch_10.pth"], val={2: 40.0, 5: 30.0, 10: 35.0})
    with pytest.raises(InputError) as exc:
        resolve_parent_checkpoint(results_dir=str(run), choose="best")
    text = str(exc.value)
    assert "epoch 2" in text and "epoch_5.pth, epoch_10.pth" in text and "exact epoch" in text


def test_exact_epoch_missing_lists_what_exists(workspace: Path):
    run = make_run(workspace / "r", ["epoch_1.pth", "epoch_3.pth"])
    with pytest.raises(InputError, match=r"epoch_2\.pth does not exist \(have epoch_1\.pth, epoch_3\.pth\)"):
        resolve_parent_checkpoint(results_dir=str(run), epoch=2)


def test_defaults_by_parent_state(workspace: Path):
    no_kpi = make_run(workspace / "a", ["epoch_1.pth", "epoch_2.pth"])
    c = resolve_parent_checkpoint(parent_job_id=make_job(no_kpi, num_epochs=2))
    assert c.epoch == 2 and "final" in c.method
    failed = make_run(workspace / "b", ["epoch_1.pth"], val={1: 10.0}, finished=False)
    jid = make_job(failed, state="failed", num_epochs=5)
    with pytest.raises(InputError, match="must be chosen explicitly"):
        resolve_parent_checkpoint(parent_job_id=jid)
    with pytest.raises(InputError, match="needs a succeeded train job"):
        resolve_parent_checkpoint(parent_job_id=jid, choose="final")
    assert resolve_parent_checkpoint(parent_job_id=jid, choose="latest").epoch == 1


def test_bad_parents(workspace: Path, tmp_path: Path):
    run = make_run(workspace / "r", ["epoch_1.pth"])
    with pytest.raises(InputError, match="not train"):
        resolve_parent_checkpoint(parent_job_id=make_job(run, action="evaluate"))
    with pytest.raises(InputError, match="not a job id"):
        resolve_parent_checkpoint(parent_job_id="../../etc/passwd")
    with pytest.raises(InputError, match="list_jobs"):
        resolve_parent_checkpoint(parent_job_id="j" + "f" * 16)
    outside = make_run(tmp_path / "outside", ["epoch_1.pth"])
    with pytest.raises(InputError, match="outside the allowed roots"):
        resolve_parent_checkpoint(results_dir=str(outside))
    (workspace / "link").symlink_to(outside)
    with pytest.raises(InputError, match="outside the allowed roots"):
        resolve_parent_checkpoint(results_dir=str(workspace / "link"))


def test_symlinked_checkpoint_escaping_the_run_is_ignored(workspace: Path, tmp_path: Path):
    run = make_run(workspace / "r", ["epoch_1.pth"])
    (tmp_path / "evil.pth").write_text("x")
    (run / "train" / "epoch_9.pth").symlink_to(tmp_path / "evil.pth")
    assert resolve_parent_checkpoint(results_dir=str(run), choose="latest").epoch == 1


def test_build_spec_wires_parent_model_and_resume(workspace: Path):
    root = copy_sample(workspace / "kitti")
    run = make_run(workspace / "runs" / "t1", ["epoch_1.pth", "epoch_2.pth"], val={1: 5.0, 2: 9.0},
                   pointer="/results/t1/train/epoch_2.pth")
    parent = build_spec(BuildSpecInput(action="train", data_root=str(root), overrides={"num_epochs": 2}))
    jid = make_job(run, num_epochs=2, spec_path=parent.spec_path)
    ev = build_spec(BuildSpecInput(action="evaluate", data_root=str(root), parent_job_id=jid))
    spec = yaml.safe_load(Path(ev.spec_path).read_text())
    assert spec["evaluate"]["checkpoint"] == "/inputs/model/epoch_2.pth" and spec["inference"]["checkpoint"] == ""
    assert ev.checkpoint_choice["epoch"] == 2 and "best" in ev.checkpoint_choice["method"]
    inf = build_spec(BuildSpecInput(action="inference", data_root=str(root), parent_job_id=jid, epoch=1))
    assert yaml.safe_load(Path(inf.spec_path).read_text())["inference"]["checkpoint"].endswith("epoch_1.pth")
    res = build_spec(BuildSpecInput(action="train", data_root=str(root), parent_job_id=jid, resume=True,
                                    overrides={"num_epochs": 4}))
    tr = yaml.safe_load(Path(res.spec_path).read_text())["train"]
    assert tr["resume"] is True and tr["resume_training_checkpoint_path"] == "/inputs/weights/epoch_2.pth"
    ft = build_spec(BuildSpecInput(action="train", data_root=str(root), parent_job_id=jid))
    tr = yaml.safe_load(Path(ft.spec_path).read_text())["train"]
    assert tr["resume"] is False and tr["resume_training_checkpoint_path"].endswith("epoch_2.pth")
