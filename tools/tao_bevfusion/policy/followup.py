"""Follow-ups, purpose clauses and ordered requests for route_request (vocabulary in references/routing.yaml).

- A follow-up ("resume it", "evaluate epoch 2 of that run") carries no trigger phrase; it belongs to this
  skill when the caller says the conversation is already here or names the last job, or when the request
  names a job id itself.
- A purpose clause ("convert ... so BEVFusion can train on it") is why, not what: its verbs are not intents.
- An ordered request ("convert, then train 3 epochs") is a sequence of actions, each with what it said.
"""

import re
from typing import Any

from pydantic import BaseModel, Field

from tao_bevfusion.policy.vocab import vocabulary

ORDER = ("dataset_convert", "train", "evaluate", "inference")
JOB_ID = re.compile(r"\bj[0-9a-f]{16}\b")


class RouteContext(BaseModel):
    last_job_id: str | None = Field(
        default=None,
        max_length=64,
        description=("The job the conversation was last about (its 'it', 'that run')."),
    )
    in_skill: bool = Field(
        default=False, description="The conversation is already in this skill (a follow-up)."
    )


class RouteStep(BaseModel):
    action: str = Field(description="dataset_convert, train, evaluate or inference.")
    hints: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "What the request said for this step: num_epochs, epoch, choose (best/latest/final), resume, "
            "parent_job_id."
        ),
    )


def main_clause(text: str) -> str:
    """The request without its purpose clauses."""
    for rx in vocabulary().get("purpose", []):
        text = re.sub(rx, " ", text)
    return text


def in_context(text: str, context: RouteContext | None) -> bool:
    return bool(JOB_ID.search(text) or (context and (context.in_skill or context.last_job_id)))


def follow_up_phrases(text: str) -> list[str]:
    return [
        m.group(0).strip() for rx in vocabulary().get("follow_up", []) if (m := re.search(rx, text))
    ]


NUMBER = r"(\d+(?:\.\d+)?(?:e-?\d+)?)"


def train_values(segment: str) -> dict[str, Any]:
    """What a train request said about epochs, batch size, learning rate and GPUs (the user's values)."""
    out: dict[str, Any] = {}
    if m := re.search(r"\b(\d{1,4})\s+(more|additional|extra|further)\s+epochs?\b", segment):
        out["more_epochs"] = int(m.group(1))
    elif m := re.search(r"\b(\d{1,4})\s+epochs?\b|\bepochs\s*(?:=|:)\s*(\d{1,4})\b", segment):
        out["num_epochs"] = int(m.group(1) or m.group(2))
    if m := re.search(r"\b(?:batch[ _-]?size|bs)\s*(?:=|of|to)?\s*(\d{1,3})\b", segment):
        out["batch_size"] = int(m.group(1))
    if m := re.search(r"\b(?:learning[ _-]?rate|lr)\s*(?:=|of|to)?\s*" + NUMBER, segment):
        out["learning_rate"] = float(m.group(1))
    if m := re.search(
        r"\bgpus?\s*(?:=|ids?)?\s*(\d{1,2}(?:\s*(?:,|and|\+)\s*\d{1,2})*)\b", segment
    ):
        out["gpus"] = re.findall(r"\d{1,2}", m.group(1))
    elif m := re.search(r"\b(\d{1,2})\s+gpus?\b", segment):
        out["num_gpus"] = int(m.group(1))
    return out


def hints(segment: str, action: str, context: RouteContext | None) -> dict[str, Any]:
    """Numbers and references the request gave for one action."""
    out: dict[str, Any] = train_values(segment) if action == "train" else {}
    if action != "train" and (m := re.search(r"\bgpus?\s*(\d{1,2})\b", segment)):
        out["gpus"] = [m.group(1)]
    counted = "num_epochs" in out or "more_epochs" in out
    if (m := re.search(r"\bepoch\s*(\d{1,4})\b", segment)) and not (action == "train" and counted):
        out["epoch"] = int(m.group(1))
    if action in ("evaluate", "inference") and (
        m := re.search(r"\b(best|latest|final|last)\b", segment)
    ):
        out["choose"] = {"last": "latest"}.get(m.group(1), m.group(1))
    if action == "train" and re.search(r"\bresum(e|ing)\b|\bcontinue\b|\bpick up where\b", segment):
        out["resume"] = True
    job = JOB_ID.search(segment)
    refers = re.search(
        r"\b(it|that|this|the last|the previous|my last|the same|the best|the latest)\b", segment
    )
    if job:
        out["parent_job_id"] = job.group(0)
    elif (
        context
        and context.last_job_id
        and (refers or out.get("resume") or "epoch" in out or "choose" in out)
    ):
        out["parent_job_id"] = context.last_job_id
    return out


def _positions(text: str, intents: dict[str, list[str]]) -> list[tuple[int, str]]:
    found = []
    for action in intents:
        starts = [
            m.start() for rx in vocabulary()["actions"][action] for m in re.finditer(rx, text)
        ]
        starts = [
            s for s in starts if not (action == "train" and re.match(r"\s*trained\b", text[s:]))
        ]
        if starts:
            found.append((min(starts), action))
    return sorted(found)


def sequence(
    text: str, intents: dict[str, list[str]], context: RouteContext | None
) -> list[RouteStep] | None:
    """The actions of an ordered request, in the order asked, or None when the order is not clear.

    Ordered means a sequence marker ("then", "first", "after that") or the pipeline's own order."""
    placed = _positions(text, intents)
    if len(placed) < 2:
        return None
    actions = [a for _, a in placed]
    marked = any(re.search(rx, text) for rx in vocabulary().get("sequence", []))
    if not marked and actions != sorted(actions, key=ORDER.index):
        return None
    bounds = [p for p, _ in placed] + [len(text)]
    return [
        RouteStep(action=a, hints=hints(text[bounds[i] : bounds[i + 1]], a, context))
        for i, a in enumerate(actions)
    ]


def suggested_call(step: RouteStep, automl_policy: str | None, data_root: str | None = None) -> str:
    """The run_action call for one step, carrying every value the user gave (JSON-encoded, one call)."""
    from tao_bevfusion.core.calls import call_text

    h = step.hints
    args: dict[str, Any] = {"action": step.action, "data_root": data_root}
    for key in ("parent_job_id", "epoch", "choose", "gpus", "num_gpus"):
        args[key] = h.get(key)
    if h.get("resume"):
        args["resume"] = True
    overrides = {k: h[k] for k in ("num_epochs", "batch_size", "learning_rate") if k in h}
    args["overrides"] = overrides or None
    if step.action == "train" and (automl_policy == "off" or h.get("resume")):
        args["automl_policy"] = "off"
    return call_text("run_action", args)
