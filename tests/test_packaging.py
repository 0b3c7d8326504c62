"""A plain (non-editable) `pip install .` carries the skill-bank files and finds them."""

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def test_wheel_install_finds_the_skill_files(tmp_path: Path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-deps", str(REPO)], capture_output=True,
                         text=True)
    assert pip.returncode == 0, pip.stderr[-2000:]
    code = ("import tools, tools.settings as s; print(tools.__file__); print(s.skill_dir()); "
            "from tools.policy.routing import resolve_automl_policy as r; print(r('train').route)")
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[0].startswith(str(venv)) and out[1] == str(venv / "share" / "tao-bevfusion")
    assert out[2] == "tao-skill-bank:tao-run-automl"  # schemas and templates were found and parsed
    cli = subprocess.run([str(venv / "bin" / "tao-bevfusion"), "route-request", "--request", "train BEVFusion"],
                         cwd=tmp_path, capture_output=True, text=True)
    assert cli.returncode == 0 and "tao-train-bevfusion -> train" in cli.stdout
