"""A person's yes before an expensive launch, through MCP elicitation (form mode).

Starting a study, or a train launch projected above TAO_BEVFUSION_CONFIRM_GPU_HOURS, asks the person:
what runs, where, trials, GPUs and projected GPU-hours. Accept launches that plan (its digest is
checked again right before launching); decline or cancel launches nothing and says so. Clients without
elicitation keep the review -> confirm=true path, unless TAO_BEVFUSION_REQUIRE_ELICITATION=1, which
refuses such launches from them. 2025-era connections get a server->client elicitation/create; 2026-07-28
connections get an InputRequiredResult and retry with the answer (request_state is sealed by the SDK).
"""

import json
import os
from typing import Any

import anyio
from mcp.server.elicitation import render_elicitation_schema
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import (
    CallToolResult,
    ElicitRequest,
    ElicitRequestFormParams,
    ElicitResult,
    InputRequiredResult,
    TextContent,
)
from mcp_types.version import is_version_at_least
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tao_bevfusion import api
from tao_bevfusion.jobs.context import AppContext
from tao_bevfusion.service.cost import LaunchCost

THRESHOLD_ENV = "TAO_BEVFUSION_CONFIRM_GPU_HOURS"
REQUIRE_ENV = "TAO_BEVFUSION_REQUIRE_ELICITATION"
DEFAULT_THRESHOLD = 8.0
KEY = "tao_bevfusion_launch_approval"
INPUT_REQUIRED_VERSION = "2026-07-28"


class LaunchApproval(BaseModel):
    """The form's one field; the plan itself is in the message above it."""

    model_config = ConfigDict(extra="forbid")
    approve: bool = Field(
        title="Launch exactly this plan", description="Tick to launch; leave it to launch nothing."
    )


def threshold() -> float:
    raw = os.environ.get(THRESHOLD_ENV, "").strip()
    try:
        return float(raw) if raw else DEFAULT_THRESHOLD
    except ValueError:
        return DEFAULT_THRESHOLD


def required() -> bool:
    return os.environ.get(REQUIRE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def needs_person(cost: LaunchCost | None) -> bool:
    return cost is not None and (cost.study or cost.gpu_hours > threshold())


def can_elicit(ctx: Context) -> bool:
    caps = ctx.client_capabilities
    form = caps.elicitation if caps is not None else None
    return form is not None and (form.form is not None or form.url is None)


def message(cost: LaunchCost) -> str:
    return (
        f"tao-bevfusion asks before launching:\n"
        f"What: {cost.what}\nWhere: {cost.where}\nTrials: {cost.trials}; GPUs at once: {cost.gpus}\n"
        f"Projected: about {cost.gpu_hours:g} GPU-hours (at most {cost.max_gpu_hours:g}); {cost.basis}.\n"
        "Accept with 'Launch exactly this plan' ticked to start it; decline to launch nothing."
    )


def outcome(action: str, content: dict[str, Any] | None, cost: LaunchCost) -> CallToolResult | None:
    """None: approved, launch. Else the result that says nothing was launched."""
    if action == "accept":
        try:
            approval = LaunchApproval.model_validate(content or {})
        except ValidationError as exc:
            raise ToolError(
                f"invalid approval form content: {exc.errors()[0]['msg']}; nothing was launched"
            ) from exc
        if approval.approve:
            return None
        action = "accept without 'approve'"
    text = (
        f"The person did not approve ({action}); nothing was launched. Plan shown: {cost.what}, about "
        f"{cost.gpu_hours:g} GPU-hours. Ask them what to change before calling run_action again."
    )
    data = {"job_id": None, "state": "declined", "message": text}
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=data)


def _refusal(cost: LaunchCost) -> ToolError:
    return ToolError(
        f"this server requires a person's approval through elicitation ({REQUIRE_ENV}) for "
        f"{cost.what} (about {cost.gpu_hours:g} GPU-hours); this client cannot show the form, so "
        "nothing was launched: use a client with elicitation (Claude Code, VS Code, Cursor) or "
        "ask the operator to lift the requirement"
    )


def _round_trip(cost: LaunchCost, ctx: Context) -> CallToolResult | InputRequiredResult | None:
    """2026-07-28: ask through InputRequiredResult; on the retry, use the answer if it is for this plan."""
    answer = (ctx.input_responses or {}).get(KEY)
    try:
        asked = json.loads(ctx.request_state or "{}").get("plan")
    except ValueError:
        asked = None
    if isinstance(answer, ElicitResult) and asked == cost.digest():
        return outcome(answer.action, answer.content, cost)
    form = ElicitRequestFormParams(
        message=message(cost), requested_schema=render_elicitation_schema(LaunchApproval)
    )
    return InputRequiredResult(
        input_requests={KEY: ElicitRequest(params=form)},
        request_state=json.dumps({"plan": cost.digest()}),
    )


async def ask_first(
    t: api.ToolDef, inp: Any, app: AppContext, ctx: Context | None
) -> CallToolResult | InputRequiredResult | None:
    """None: go ahead with the call. Else what to answer instead (a question, or 'nothing launched')."""
    if t.launch_cost is None or ctx is None:
        return None
    asking = can_elicit(ctx)
    if not asking and not required():
        return None  # a client without forms, a server without the requirement: exactly as before
    cost = await anyio.to_thread.run_sync(t.launch_cost, inp, app)
    if not needs_person(cost):
        return None
    assert cost is not None
    if not asking:
        raise _refusal(cost)
    version = ctx.protocol_version
    if version is not None and is_version_at_least(version, INPUT_REQUIRED_VERSION):
        return _round_trip(cost, ctx)
    try:
        answer = await ctx.elicit(message(cost), LaunchApproval)
    except ValueError as exc:
        raise ToolError(f"invalid approval form answer ({exc}); nothing was launched") from exc
    content = answer.data.model_dump() if answer.action == "accept" else None
    said = outcome(answer.action, content, cost)
    if said is None and (now := await anyio.to_thread.run_sync(t.launch_cost, inp, app)) != cost:
        raise ToolError(
            "the plan changed while the person was deciding (now: "
            f"{now.what if now else 'nothing to launch'}); nothing was launched: call run_action again"
        )
    return said
