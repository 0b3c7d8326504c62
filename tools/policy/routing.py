"""Which skill and action a user's request asks for (references/routing.yaml vocabulary)."""

import re

from pydantic import BaseModel, Field

from tools.policy.automl import resolve_automl_policy
from tools.policy.vocab import fold, vocabulary


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
    text = fold(request or "")
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
