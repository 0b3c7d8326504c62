"""Escapes (issue 11, security): host folders reaching a job, reads outside the roots, env that runs code,
keys readable by other users. Each test is an attack through the public surfaces."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.attacks.helpers import FAST, call, launch, mcp_call, refused
from tests.conftest import REPO

pytestmark = pytest.mark.attack


@pytest.mark.docker
def test_hand_written_launch_sidecar_is_not_trusted(converted: Path, docker_ws: Path, tmp_path: Path):
    """A sidecar edited on disk (host /etc mounted rw, results outside the roots) must not reach a launch.
    Decision: run_action re-derives the mounts from the spec and the roots, or refuses; never uses them."""
    built = call("build_spec", action="train", data_root=str(converted), overrides=FAST)
    side = next(p for p in Path(built.spec_path).parent.iterdir() if p.name.endswith(".launch.json")
                and p.name.startswith(Path(built.spec_path).stem))
    data = json.loads(side.read_text())
    outside = tmp_path / "outside-results"
    data["mounts"].append({"host": "/etc", "container": "/hostetc", "mode": "rw"})
    data["results_dir"] = str(outside)
    side.write_text(json.dumps(data))
    r = mcp_call("run_action", {"action": "train", "spec_path": built.spec_path, "automl_policy": "off",
                                "gpus": [], "dry_run": True})
    if not r.is_error:
        plan = r.structured_content["plan"]
        assert not any(m["host"] == "/etc" for m in plan["mounts"]), plan["mounts"]
        assert str(outside) not in json.dumps(plan)
    assert not outside.exists()


def test_results_dir_may_not_be_the_state_dir(raw_root: Path, workspace: Path):
    """The state dir holds jobs.db and every spec (with keys): mounting it into a job must be refused."""
    text = refused("build_spec", action="train", data_root=str(raw_root), results_dir=str(workspace / "home"),
                   overrides=FAST)
    assert "results_dir" in text


def test_results_dir_may_not_be_inside_the_state_dir(raw_root: Path, workspace: Path):
    """Decision: nothing under the state dir except the default runs/ folder it hands out itself."""
    text = refused("build_spec", action="train", data_root=str(raw_root),
                   results_dir=str(workspace / "home" / "specs"), overrides=FAST)
    assert "results_dir" in text


def test_imagesets_symlink_out_of_root_is_not_read(raw_root: Path):
    """ImageSets/train.txt -> /etc/passwd: flagged, and not one line of it comes back."""
    target = raw_root / "ImageSets" / "train.txt"
    target.unlink()
    target.symlink_to("/etc/passwd")
    r = mcp_call("check_dataset", {"data_root": str(raw_root), "action": "dataset_convert"})
    blob = r.content[0].text + json.dumps(r.structured_content)
    assert "root:" not in blob and "/bin/" not in blob, blob[:400]
    assert r.structured_content["ok"] is False


def test_label_symlink_out_of_root_is_flagged_and_not_read(raw_root: Path, tmp_path: Path):
    """A label linked outside the root: an escape problem, and its content never parsed (no class problems
    about the outside file's content). The outside file holds a bogus class that would be reported if read."""
    secret = tmp_path / "outside_label.txt"
    secret.write_text("SECRETCLASS 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n")
    label = raw_root / "training" / "label_2" / "000000.txt"
    label.unlink()
    label.symlink_to(secret)
    r = call("check_dataset", data_root=str(raw_root), action="dataset_convert")
    assert not r.ok
    assert "SECRETCLASS" not in r.model_dump_json()
    assert not [p for p in r.problems if p.code.startswith("LABEL") and "000000" in p.path]


def test_modality_folder_symlink_out_of_root_is_not_ready(raw_root: Path, tmp_path: Path):
    """training/velodyne linked to a folder outside the root must not pass as ready."""
    velo = raw_root / "training" / "velodyne"
    moved = tmp_path / "velodyne_outside"
    velo.rename(moved)
    velo.symlink_to(moved)
    r = call("check_dataset", data_root=str(raw_root), action="dataset_convert")
    assert r.ok is False, r.problems


def _cli_check(root: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
    return subprocess.run([sys.executable, "-m", "tao_bevfusion.cli", "check-dataset", "--data-root", str(root),
                           "--action", "dataset_convert", "--json"], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, preexec_fn=limit, env=dict(os.environ))


def test_fifo_in_dataset_does_not_hang_check_dataset(raw_root: Path):
    """A FIFO in place of a calib file: check_dataset answers within seconds and names it (not a regular file)."""
    calib = raw_root / "training" / "calib" / "000000.txt"
    calib.unlink()
    os.mkfifo(calib)
    try:
        p = _cli_check(raw_root, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("check_dataset hung on a FIFO")
    assert p.returncode == 0 and json.loads(p.stdout)["ok"] is False


def test_device_file_in_dataset_is_not_read_unbounded(raw_root: Path):
    """A label file linked to /dev/zero: not read without bound (1 GB address-space cap here), refused as
    not a regular file."""
    label = raw_root / "training" / "label_2" / "000000.txt"
    label.unlink()
    os.symlink("/dev/zero", label)
    try:
        p = _cli_check(raw_root, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("check_dataset read /dev/zero without a bound")
    assert p.returncode == 0, p.stderr[-500:]
    assert json.loads(p.stdout)["ok"] is False


@pytest.mark.parametrize("name", ["LD_AUDIT", "BASH_ENV", "ENV", "PYTHONWARNINGS", "PYTHONSTARTUP",
                                  "NVIDIA_DRIVER_CAPABILITIES", "NVIDIA_REQUIRE_CUDA", "RANK", "LOCAL_RANK",
                                  "WORLD_SIZE", "MASTER_ADDR", "PET_NNODES", "LD_BIND_NOW", "PYTHONINSPECT"])
def test_loader_interpreter_launcher_env_is_refused(raw_root: Path, name: str):
    """Variables that load code or steer the loader/interpreter/launcher/devices are refused in env."""
    r = mcp_call("run_action", {"action": "dataset_convert", "data_root": str(raw_root), "dry_run": True,
                                "gpus": [], "env": {name: "/data/evil.so"}})
    assert r.is_error and name in r.content[0].text


@pytest.mark.parametrize("name", ["TOKENIZERS_PARALLELISM", "FAKE_TAO_ITER_SECONDS", "OMP_NUM_THREADS",
                                  "NCCL_DEBUG", "KEYBOARD_LAYOUT", "MONKEY_PATCH"])
def test_ordinary_env_names_are_not_called_secrets(raw_root: Path, name: str, monkeypatch: pytest.MonkeyPatch):
    """Harmless names must pass (the old heuristic refused anything containing KEY/TOKEN/AUTH...); names
    off the allow-list pass once the operator allows them (issue 17: the policy is an allow-list)."""
    monkeypatch.setenv("TAO_BEVFUSION_ENV_ALLOW", "KEYBOARD_*,MONKEY_PATCH")
    r = mcp_call("run_action", {"action": "dataset_convert", "data_root": str(raw_root), "dry_run": True,
                                "gpus": [], "env": {name: "1"}})
    assert not r.is_error, r.content[0].text
    assert r.structured_content["plan"]["env"][name] == "1"


def test_spec_with_key_and_state_dir_are_private(raw_root: Path, workspace: Path):
    """A spec holding the encryption key is 0600 in 0700 folders; the state dir is 0700."""
    built = call("build_spec", action="train", data_root=str(raw_root), overrides=FAST, encryption_key="k3y-private")
    spec = Path(built.spec_path)
    assert stat.S_IMODE(spec.stat().st_mode) & 0o077 == 0, oct(spec.stat().st_mode)
    assert stat.S_IMODE(spec.parent.stat().st_mode) & 0o077 == 0, oct(spec.parent.stat().st_mode)
    assert stat.S_IMODE((workspace / "home").stat().st_mode) & 0o077 == 0


@pytest.mark.docker
def test_job_folder_is_private(converted: Path, workspace: Path):
    s = launch("train", converted, overrides={"num_epochs": 1, "batch_size": 1})
    job_dir = workspace / "home" / "jobs" / s.job_id
    assert stat.S_IMODE(job_dir.stat().st_mode) & 0o077 == 0, oct(job_dir.stat().st_mode)
