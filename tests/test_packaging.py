"""A plain (non-editable) `pip install .` carries the skill-bank files and finds them."""

import subprocess
import sys
import sysconfig
from pathlib import Path

from tests.conftest import REPO


def test_wheel_install_finds_the_skill_files(tmp_path: Path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # the dependencies come from the interpreter running the tests (itself often a venv); a path added by a
    # .pth file gets no .pth processing of its own, so an editable install there stays invisible
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = subprocess.run([str(venv / "bin" / "python"), "-c", purelib], capture_output=True, text=True,
                          check=True).stdout.strip()
    Path(site, "deps_of_the_test_runner.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-deps", str(REPO)], capture_output=True,
                         text=True)
    assert pip.returncode == 0, pip.stderr[-2000:]
    code = ("import importlib.util, tao_bevfusion, tao_bevfusion.core.settings as s; print(tao_bevfusion.__file__); "
            "print(s.skill_dir()); from tao_bevfusion.policy.routing import resolve_automl_policy as r; "
            "print(r('train').route); print(importlib.util.find_spec('tools'))")
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[0].startswith(str(venv)) and out[1] == str(venv / "share" / "tao-bevfusion")
    assert out[2] == "tao-skill-bank:tao-run-automl"  # schemas and templates were found and parsed
    assert out[3] == "None"  # the install adds no top-level package named `tools`
    cli = subprocess.run([str(venv / "bin" / "tao-bevfusion"), "route-request", "--request", "train BEVFusion"],
                         cwd=tmp_path, capture_output=True, text=True)
    assert cli.returncode == 0 and "tao-train-bevfusion -> train" in cli.stdout
