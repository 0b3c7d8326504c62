"""Agent decisions before a launch: the AutoML policy for train, and which skill/action a request asks for.

Both follow the skill's own rules (Train Action Policy) and read their vocabulary from
references/routing.yaml; neither ever writes to skill_info.yaml.
"""

import functools
import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field

from tools.errors import ToolInputError, problem
from tools.settings import skill_dir
from tools.surface import ACTIONS
from tools.yamlio import fast_yaml

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


def _fold(text: str) -> str:
    return " " + re.sub(r"[^a-z0-9+&']+", " ", text.lower().replace("’", "'")).replace("'", " ") + " "


@functools.lru_cache(maxsize=1)
def vocabulary() -> dict[str, Any]:
    data: dict[str, Any] = fast_yaml((skill_dir() / "references" / "routing.yaml").read_text())
    return data


def _off_phrase(text: str) -> str | None:
    vocab = vocabulary()
    folded = _fold(text)
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
        raise ToolInputError(problem("action", f"unknown action {action!r}", f"use one of {list(ACTIONS)}"))
    if automl_policy is not None and automl_policy not in ("on", "off"):
        raise ToolInputError(problem("automl_policy", f"{automl_policy!r} is not a policy value",
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
                          reason=f"{why}; {runnable_why}: route train through {AUTOML_ROUTE}")


class RouteResult(BaseModel):
    matched: bool = Field(description="The request belongs to this skill (tao-train-bevfusion).")
    action: str | None = Field(description="dataset_convert/train/evaluate/inference, or null when unclear.")
    automl_policy: str | None = Field(description="For train: 'on' or 'off' from the request.")
    confidence: float = Field(description="0..1.")
    matched_phrases: list[str] = Field(description="Trigger, context and intent phrases found in the request.")
    ambiguity: str | None = Field(default=None, description="Why no single action was chosen, when so.")
    unsupported: str | None = Field(default=None, description="Why the requested action cannot be done.")
    skill: str = Field(default="tao-train-bevfusion", description="The skill this server implements.")


def route_request(request: str) -> RouteResult:
    vocab = vocabulary()
    text = _fold(request or "")
    hits = [m.group(0).strip() for rx in vocab["triggers"] if (m := re.search(rx, text))]
    context = [m.group(0).strip() for rx in vocab["context"] if (m := re.search(rx, text))]
    other = [m.group(0).strip() for rx in vocab["other_models"] if (m := re.search(rx, text))]
    if not hits or (other and not re.search(r"bev ?fusion", text)):
        why = f"names another model/task ({other[0]})" if other else "no BEVFusion trigger phrase"
        return RouteResult(matched=False, action=None, automl_policy=None, confidence=0.0,
                           matched_phrases=hits + other, ambiguity=why)
    unsupported = [(name, m.group(0).strip()) for name, rx in vocab["unsupported"].items()
                   if (m := re.search(rx, text))]
    intents: dict[str, list[str]] = {}
    for action, rxs in vocab["actions"].items():
        found = [m.group(0).strip() for rx in rxs if (m := re.search(rx, text))]
        if found:
            intents[action] = found
    phrases = hits + context + [p for v in intents.values() for p in v]
    confidence = min(1.0, 0.6 + 0.1 * len(hits) + 0.05 * len(context))
    if unsupported and not intents:
        name, word = unsupported[0]
        return RouteResult(matched=True, action=None, automl_policy=None, confidence=confidence,
                           matched_phrases=[*phrases, word], unsupported=f"{name}: {vocab['unsupported_reason']}")
    action = _pick_action(intents)
    if action is None:
        if len(intents) > 1:
            return RouteResult(matched=True, action=None, automl_policy=None, confidence=confidence - 0.2,
                               matched_phrases=phrases, ambiguity="the request asks for several actions ("
                               f"{', '.join(intents)}); ask which to run first (usual order: dataset_convert, "
                               "train, evaluate, inference)")
        return RouteResult(matched=True, action=None, automl_policy=None, confidence=confidence - 0.2,
                           matched_phrases=phrases, ambiguity="no action named; ask whether to convert, train, "
                           "evaluate or run inference")
    policy = None
    if action == "train":
        policy = resolve_automl_policy("train", request=request).automl_policy
    return RouteResult(matched=True, action=action, automl_policy=policy, confidence=round(confidence, 2),
                       matched_phrases=phrases)


def _pick_action(intents: dict[str, list[str]]) -> str | None:
    if len(intents) == 1:
        return next(iter(intents))
    # "train ... and evaluate" is a pipeline, not one action; but "evaluate the trained model" is evaluate.
    if set(intents) == {"train", "evaluate"} and all(re.fullmatch(r"trained", p) for p in intents["train"]):
        return "evaluate"
    if set(intents) == {"train", "inference"} and all(re.fullmatch(r"trained", p) for p in intents["train"]):
        return "inference"
    return None
