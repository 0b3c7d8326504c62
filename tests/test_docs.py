"""SKILL.md, README and examples stay true to the code."""

import json
import re

import yaml
from tao_bevfusion.api import TOOLS
from tao_bevfusion.jobs.launch import RunActionInput
from tao_bevfusion.specbuild.build import BuildSpecInput

from tests.conftest import REPO

SKILL = (REPO / "skill" / "SKILL.md").read_text()
README = (REPO / "README.md").read_text()
NAMES = {t.name for t in TOOLS}


def _frontmatter() -> dict:
    return yaml.safe_load(SKILL.split("---")[1])


def test_skill_frontmatter_matches_the_skill_bank_contract():
    fm = _frontmatter()
    assert fm["name"] == "tao-train-bevfusion"
    for phrase in ("train BEVFusion", "LiDAR + camera fusion", "BEV 3D detection", "multi-sensor 3D perception"):
        assert phrase in fm["description"]
    assert fm["license"] and fm["compatibility"] and fm["tags"]
    assert set(fm["allowed-tools"].split()) == NAMES


def test_every_tool_the_skill_and_readme_mention_exists_and_all_are_documented():
    for text in (SKILL, README):
        called = set(re.findall(r"`([a-z_]+)\(", text))  # every `name(...)` call shown to the reader
        assert called - {"dataset_convert"} <= NAMES, called - NAMES
    for name in NAMES:
        assert f"`{name}`" in SKILL and f"`{name}`" in README


def test_arguments_named_in_the_docs_exist():
    fields = set(BuildSpecInput.model_fields) | set(RunActionInput.model_fields)
    for arg in ("automl_policy", "parent_job_id", "pretrained_checkpoint", "swin_checkpoint", "wait_seconds",
                "dry_run", "gpus", "spec_path", "resume", "num_gpus", "encryption_key"):
        assert arg in fields and arg in SKILL


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text()
    match = re.search(r"^    (python3 -m pytest[^\n]*)$", README, re.M)
    assert match, "README must show the test command indented in a code block"
    assert match.group(1) in ci


def test_example_client_configs_parse_and_start_the_server():
    desktop = json.loads((REPO / "examples" / "claude_desktop_config.json").read_text())
    server = desktop["mcpServers"]["tao-bevfusion"]
    assert server["args"][-1] == "serve" and "TAO_BEVFUSION_ROOTS" in server["env"]
    assert "claude mcp add" in (REPO / "examples" / "claude_code.md").read_text()
