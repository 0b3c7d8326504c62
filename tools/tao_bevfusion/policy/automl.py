"""The skill's Train Action Policy: whether a train request goes through AutoML. Never writes skill_info.yaml."""

import functools
import json
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, Field

from tao_bevfusion.core.errors import InputError, problem
from tao_bevfusion.core.settings import skill_dir
from tao_bevfusion.core.yamlio import fast_yaml
from tao_bevfusion.policy.vocab import fold, vocabulary
from tao_bevfusion.specbuild.surface import ACTIONS

AUTOML_ROUTE = "tao-skill-bank:tao-run-automl"
PRESERVE = ["datasets (data_root, ann_file pickles)", "spec overrides", "output dirs (results_dir)",
            "GPU/platform settings (num_gpus, gpus, backend)", "parent checkpoints", "automl_policy"]


class AutoMLDecision(BaseModel):
    action: str = Field(description="The action the decision is for.")
    applies: bool = Field(description="False for every action but train.")
    automl_policy: Literal["on", "off", "not_applicable"] = Field(description="The policy for this run.")
    route: str = Field(description="'tao-skill-bank:tao-run-automl' or 'direct'.")
    runnable: bool = Field(description="AutoML is runnable: enabled, train schema and template present and valid.")
    reason: str = Field(description="Which value or phrase decided, and why.")
    skill_dir: str = Field(description="This skill's directory, to hand to tao-run-automl.")
    preserve: list[str] = Field(default_factory=list, description="What the AutoML route must carry over.")
    decided_by: str | None = Field(default=None, description="'argument', the matched phrase, or 'default'.")


def _off_phrase(text: str) -> str | None:
    vocab = vocabulary()
    folded = fold(text)
    for rx in vocab["automl_off"]:
        for m in re.finditer(rx, folded):
            before = folded[: m.start()]
            if any(re.search(neg, before) for neg in vocab["negations"]):
                continue
            return m.group(0).strip()
    return None


def automl_runnable(root: Path) -> tuple[bool, str]:
    """(runnable, why) from skill_info.yaml and the packaged train schema/template, read-only.

    Cached on the three files' mtimes, so a changed or removed file is seen on the next call."""
    files = [root / "references" / "skill_info.yaml", root / "schemas" / "train.schema.json",
             root / "references" / "spec_template_train.yaml"]
    stamp = tuple(f.stat().st_mtime_ns if f.exists() else None for f in files)
    return _automl_runnable(root, stamp)


@functools.lru_cache(maxsize=16)
def _automl_runnable(root: Path, _stamp: tuple[int | None, ...]) -> tuple[bool, str]:
    try:
        info = fast_yaml((root / "references" / "skill_info.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        return False, f"references/skill_info.yaml unreadable ({exc.__class__.__name__})"
    if not info.get("automl_enabled"):
        return False, "skill_info.yaml has automl_enabled: false"
    try:
        schema = json.loads((root / "schemas" / "train.schema.json").read_text())
        template = fast_yaml((root / "references" / "spec_template_train.yaml").read_text())
    except (OSError, ValueError, yaml.YAMLError):
        return False, ("AutoML is enabled but not runnable for this model until schemas are generated "
                       "(schemas/train.schema.json or references/spec_template_train.yaml missing or invalid)")
    if not isinstance(schema, dict) or "properties" not in schema or not isinstance(template, dict):
        return False, "AutoML is enabled but not runnable for this model until schemas are generated"
    return True, "automl_enabled and the train schema/template parse"


def resolve_automl_policy(action: str, request: str | None = None, automl_policy: str | None = None,
                          root: Path | None = None) -> AutoMLDecision:
    root = root or skill_dir()
    if action not in ACTIONS:
        raise InputError(problem("action", f"unknown action {action!r}", f"use one of {list(ACTIONS)}"))
    if automl_policy is not None and automl_policy not in ("on", "off"):
        raise InputError(problem("automl_policy", f"{automl_policy!r} is not a policy value",
                                     "use 'on' or 'off' (only these two are exposed)", value=automl_policy))
    if action != "train":
        return AutoMLDecision(action=action, applies=False, automl_policy="not_applicable", route="direct",
                              runnable=False, skill_dir=str(root), reason=f"AutoML policy applies to train only; "
                              f"{action} stays in this skill (direct)", decided_by="action")
    if automl_policy is not None:
        policy, decided, why = automl_policy, "argument", f"explicit automl_policy={automl_policy}"
    elif request and (phrase := _off_phrase(request)):
        policy, decided, why = "off", phrase, f"the request says '{phrase}' (off for this run only)"
    else:
        policy, decided, why = "on", "default", "default policy is on"
    runnable, runnable_why = automl_runnable(root)
    if policy == "off":
        return AutoMLDecision(action=action, applies=True, automl_policy="off", route="direct", runnable=runnable,
                              skill_dir=str(root), reason=f"{why}: direct model training", decided_by=decided)
    if not runnable:
        return AutoMLDecision(action=action, applies=True, automl_policy="on", route="direct", runnable=False,
                              skill_dir=str(root), reason=f"{why}, but {runnable_why}; training directly",
                              decided_by=decided)
    return AutoMLDecision(action=action, applies=True, automl_policy="on", route=AUTOML_ROUTE, runnable=True,
                          skill_dir=str(root), preserve=PRESERVE, decided_by=decided,
                          reason=f"{why}; {runnable_why}: route train through {AUTOML_ROUTE}; this server runs "
                          "it itself (run_action(train) returns the study review; confirm=true starts it)")


