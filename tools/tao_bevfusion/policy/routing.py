"""Which skill and action a user's request asks for (references/routing.yaml vocabulary)."""

import re

from pydantic import BaseModel, Field

from tao_bevfusion.policy import followup
from tao_bevfusion.policy.automl import resolve_automl_policy
from tao_bevfusion.policy.followup import RouteContext, RouteStep
from tao_bevfusion.policy.vocab import fold, vocabulary


class RouteResult(BaseModel):
    matched: bool = Field(description="The request belongs to this skill (tao-train-bevfusion).")
    action: str | None = Field(description="dataset_convert/train/evaluate/inference, or null when unclear.")
    automl_policy: str | None = Field(description="For train: 'on' or 'off' from the request.")
    confidence: float = Field(description="0..1.")
    matched_phrases: list[str] = Field(description="Trigger, context and intent phrases found in the request.")
    ambiguity: str | None = Field(default=None, description="Why no single action was chosen, when so.")
    unsupported: str | None = Field(default=None, description="Why the requested action cannot be done.")
    skill: str = Field(default="tao-train-bevfusion", description="The skill this server implements.")
    steps: list[RouteStep] = Field(default_factory=list, description=(
        "The actions in the order asked, each with what the request said (epochs, epoch, best, resume, job)."))
    follow_up: bool = Field(default=False, description="Routed as a follow-up (context or a job reference).")
    suggested_calls: list[str] = Field(default_factory=list, description=(
        "The calls to make, in order, each `tool({JSON arguments})` with the user's values."))
    read: str | None = Field(default=None, description=(
        "Set when the request asks to read or stop rather than launch: 'results', 'detections' or 'stop'."))


def route_request(request: str, context: RouteContext | None = None) -> RouteResult:
    vocab = vocabulary()
    text = fold(request or "")
    hits = [m.group(0).strip() for rx in vocab["triggers"] if (m := re.search(rx, text))]
    words = [m.group(0).strip() for rx in vocab["context"] if (m := re.search(rx, text))]
    other = [m.group(0).strip() for rx in vocab["other_models"] if (m := re.search(rx, text))]
    follow = not hits and not other and followup.in_context(text, context)
    if follow:
        hits = ["(follow-up in this skill)", *followup.follow_up_phrases(text)]
    if not hits or (other and not re.search(r"bev ?fusion", text)):
        why = f"names another model/task ({other[0]})" if other else "no BEVFusion trigger phrase"
        return RouteResult(matched=False, action=None, automl_policy=None, confidence=0.0,
                           matched_phrases=hits + other, ambiguity=why)
    unsupported = [(name, m.group(0).strip()) for name, rx in vocab["unsupported"].items()
                   if (m := re.search(rx, text))]
    intents: dict[str, list[str]] = {}
    main = followup.main_clause(text)
    for action, rxs in vocab["actions"].items():
        found = [m.group(0).strip() for rx in rxs if (m := re.search(rx, main))]
        if found:
            intents[action] = found
    phrases = hits + words + [p for v in intents.values() for p in v]
    confidence = min(1.0, 0.6 + 0.1 * len(hits) + 0.05 * len(words)) - (0.1 if follow else 0.0)
    if unsupported and not intents:
        name, word = unsupported[0]
        return RouteResult(matched=True, action=None, automl_policy=None, confidence=confidence,
                           matched_phrases=[*phrases, word], unsupported=f"{name}: {vocab['unsupported_reason']}")
    if read := _read_intent(main, vocab):
        return RouteResult(matched=True, action=None, automl_policy=None, confidence=round(confidence, 2),
                           matched_phrases=phrases, follow_up=follow, read=read,
                           suggested_calls=[read_call(read, main, context)])
    action = _pick_action(intents)
    steps = [followup.RouteStep(action=action, hints=followup.hints(main, action, context))] if action else \
        followup.sequence(main, intents, context) or []
    if steps:
        return _routed(request, steps, phrases, confidence, follow)
    if follow and not intents:
        return RouteResult(matched=False, action=None, automl_policy=None, confidence=0.0, matched_phrases=phrases,
                           ambiguity="a follow-up that names no action (convert, train, evaluate, inference)")
    if len(intents) > 1:
        return RouteResult(matched=True, action=None, automl_policy=None, confidence=confidence - 0.2,
                           matched_phrases=phrases, ambiguity="the request names several actions ("
                           f"{', '.join(intents)}) in an order that is not the pipeline's and without 'then'; "
                           "ask which to run first (usual order: dataset_convert, train, evaluate, inference)")
    return RouteResult(matched=True, action=None, automl_policy=None, confidence=confidence - 0.2,
                       matched_phrases=phrases, ambiguity="no action named; ask whether to convert, train, "
                       "evaluate or run inference")


def _routed(request: str, steps: list[followup.RouteStep], phrases: list[str], confidence: float,
            follow: bool) -> RouteResult:
    policy = None
    if any(st.action == "train" and not st.hints.get("resume") for st in steps):
        policy = resolve_automl_policy("train", request=request).automl_policy
    elif any(st.action == "train" for st in steps):
        policy = "off"  # a resume continues one run; there is nothing to search
    return RouteResult(matched=True, action=steps[0].action, automl_policy=policy,
                       confidence=round(confidence, 2), matched_phrases=phrases, steps=steps, follow_up=follow,
                       suggested_calls=[followup.suggested_call(st, policy) for st in steps])


def _pick_action(intents: dict[str, list[str]]) -> str | None:
    if len(intents) == 1:
        return next(iter(intents))
    # "train ... and evaluate" is a pipeline, not one action; but "evaluate the trained model" is evaluate.
    if set(intents) == {"train", "evaluate"} and all(re.fullmatch(r"trained", p) for p in intents["train"]):
        return "evaluate"
    if set(intents) == {"train", "inference"} and all(re.fullmatch(r"trained", p) for p in intents["train"]):
        return "inference"
    return None


def _read_intent(text: str, vocab: dict) -> str | None:
    return next((name for name, rx in vocab.get("reads", {}).items() if re.search(rx, text)), None)


def read_call(read: str, text: str, context: RouteContext | None) -> str:
    """Reading is not launching: the call that answers 'what was...', 'show ...' or 'stop ...'."""
    from tao_bevfusion.core.calls import call_text

    found = followup.JOB_ID.search(text)
    job = found.group(0) if found else (context.last_job_id if context else None)
    if read == "stop":
        return call_text("cancel_job", {"job_id": job}) if job else call_text("list_jobs", {"state": "running"})
    if read == "detections":
        return (call_text("get_job", {"job_id": job, "include_pictures": True}) if job
                else call_text("list_jobs", {"action": "inference", "limit": 5}))
    if re.search(r"\bbest\b", text):
        return call_text("list_jobs", {"sort": "best_AP11", "limit": 5})
    return call_text("get_job", {"job_id": job}) if job else call_text("list_jobs", {"limit": 5})
