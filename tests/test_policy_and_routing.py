"""AutoML policy (the skill's Train Action Policy) and trigger-phrase routing on a written corpus."""

import hashlib
import shutil
from pathlib import Path

import pytest
import yaml
from tao_bevfusion.core.errors import InputError
from tao_bevfusion.policy.automl import AUTOML_ROUTE, resolve_automl_policy
from tao_bevfusion.policy.routing import route_request

from tests.conftest import REPO

CORPUS = yaml.safe_load((REPO / "tests" / "data" / "routing_corpus.yaml").read_text())


def _skill_copy(tmp_path: Path) -> Path:
    root = tmp_path / "skill"
    for folder in ("schemas", "references"):
        shutil.copytree(REPO / folder, root / folder)
    return root


@pytest.mark.parametrize("action,request_text,policy,expect_policy,route,decided", [
    ("train", None, None, "on", AUTOML_ROUTE, "default"),
    ("train", "plain training please", None, "off", "direct", "plain training"),
    ("train", "turn off AutoML", None, "off", "direct", "turn off automl"),
    ("train", "turn off AutoML", "on", "on", AUTOML_ROUTE, "argument"),  # an explicit value wins
    ("train", None, "off", "off", "direct", "argument"),
    ("train", "don't disable AutoML", None, "on", AUTOML_ROUTE, "default"),
    ("evaluate", "no HPO", "off", "not_applicable", "direct", "action"),
    ("inference", None, "on", "not_applicable", "direct", "action"),
    ("dataset_convert", None, None, "not_applicable", "direct", "action"),
])
def test_policy_table(action, request_text, policy, expect_policy, route, decided):
    d = resolve_automl_policy(action, request=request_text, automl_policy=policy)
    assert (d.automl_policy, d.route, d.decided_by) == (expect_policy, route, decided)
    assert d.reason and d.skill_dir == str(REPO)
    if route == AUTOML_ROUTE:
        assert d.runnable and "parent checkpoints" in " ".join(d.preserve) and "automl_policy" in d.preserve


@pytest.mark.parametrize("bad", ["auto", "ON", "true", ""])
def test_only_on_and_off_are_valid(bad):
    with pytest.raises(InputError, match="'on' or 'off'"):
        resolve_automl_policy("train", automl_policy=bad)


@pytest.mark.parametrize("missing", ["schemas/train.schema.json", "references/spec_template_train.yaml"])
def test_missing_or_broken_schema_means_direct_and_says_so(tmp_path: Path, missing: str):
    root = _skill_copy(tmp_path)
    (root / missing).unlink()
    d = resolve_automl_policy("train", root=root)
    assert d.route == "direct" and not d.runnable and d.automl_policy == "on"
    assert "AutoML is enabled but not runnable for this model until schemas are generated" in d.reason
    root = _skill_copy(tmp_path / "b")
    (root / missing).write_text("{not: [valid" if missing.endswith(".yaml") else "{bad json")
    assert resolve_automl_policy("train", root=root).route == "direct"


def test_policy_never_writes_skill_info(tmp_path: Path):
    root = _skill_copy(tmp_path)
    info = root / "references" / "skill_info.yaml"
    before = (hashlib.sha256(info.read_bytes()).hexdigest(), info.stat().st_mtime_ns)
    for text in ("turn off AutoML", None, "plain training"):
        resolve_automl_policy("train", request=text, root=root)
    assert (hashlib.sha256(info.read_bytes()).hexdigest(), info.stat().st_mtime_ns) == before


def test_automl_disabled_model_routes_direct(tmp_path: Path):
    root = _skill_copy(tmp_path)
    info = root / "references" / "skill_info.yaml"
    data = yaml.safe_load(info.read_text())
    data["automl_enabled"] = False
    info.write_text(yaml.safe_dump(data))
    assert resolve_automl_policy("train", root=root).route == "direct"


def test_corpus_is_large_enough():
    assert len(CORPUS) >= 100
    assert sum(1 for row in CORPUS if not (row[1] if isinstance(row, list) else row["matched"])) >= 25


def check_row(row: list | dict) -> tuple[bool, str]:
    """(passed, why) for one corpus row: a 4-column list, or a dict with context, hints and steps."""
    from tao_bevfusion.policy.followup import RouteContext

    if isinstance(row, list):
        row = {"text": row[0], "matched": row[1], "action": row[2], "automl": row[3]}
    ctx = RouteContext(**row["context"]) if row.get("context") else None
    r = route_request(row["text"], ctx)
    want = {"matched": row["matched"], "action": row["action"]}
    if "automl" in row or row["action"] == "train":
        want["automl_policy"] = row.get("automl")
    got = {k: getattr(r, k) for k in want}
    if got != want:
        return False, f"{got} != {want} ({r.ambiguity})"
    if r.steps and row.get("hints") is not None and any(
            r.steps[0].hints.get(k) != v for k, v in row["hints"].items()):
        return False, f"hints {r.steps[0].hints} lack {row['hints']}"
    if row.get("steps") and [s.action for s in r.steps] != row["steps"]:
        return False, f"steps {[s.action for s in r.steps]} != {row['steps']}"
    if r.matched and r.action is None and not (r.ambiguity or r.unsupported):
        return False, "no action and no reason"
    return True, ""


def _text(row: list | dict) -> str:
    return (row[0] if isinstance(row, list) else row["text"])[:40]


@pytest.mark.parametrize("row", CORPUS, ids=[_text(row) for row in CORPUS])
def test_routing_corpus(row):
    ok, why = check_row(row)
    assert ok, why
    if isinstance(row, list) and row[1]:
        r = route_request(row[0])
        assert r.matched_phrases and 0 < r.confidence <= 1


def test_unsupported_actions_say_why():
    r = route_request("export BEVFusion to ONNX")
    assert r.matched and r.action is None and "no export or deploy" in r.unsupported


HELDOUT = yaml.safe_load((REPO / "tests" / "data" / "routing_heldout.yaml").read_text())


def heldout_score() -> tuple[int, int, list[str]]:
    misses = [f"{_text(row)}: {why}" for row in HELDOUT for ok, why in [check_row(row)] if not ok]
    return len(HELDOUT) - len(misses), len(HELDOUT), misses


def test_routing_heldout_score():
    """Phrasings written after the rules (never tuned on): the score is reported; a drop below 80% fails."""
    passed, total, misses = heldout_score()
    assert total >= 20 and passed / total >= 0.8, misses


def test_route_request_follow_up_through_the_tool(workspace: Path):
    from tao_bevfusion import api

    r, text = api.call("route_request", {"request": "convert, then train 3 epochs", "in_skill": True})
    assert [s.action for s in r.steps] == ["dataset_convert", "train"] and r.steps[1].hints == {"num_epochs": 3}
    assert "dataset_convert then train" in text and '2. run_action({"action": "train"' in text and "ask" not in text
    r, text = api.call("route_request", {"request": "resume it", "last_job_id": "j0123456789abcdef"})
    assert r.action == "train" and '"resume": true' in text and '"automl_policy": "off"' in text
