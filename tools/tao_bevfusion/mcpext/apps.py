"""The dashboard as an MCP App (`io.modelcontextprotocol/ui`): the ui:// page resource, the tool `_meta`
that names it, and the view data attached to results for clients that render Apps.

Clients without Apps get exactly the result they always got: no `_meta`, the same text and pictures.
"""

import logging
from typing import Any

from mcp.server.apps import Apps, ResourceCsp, client_supports_apps
from mcp.server.mcpserver import Context
from pydantic import ValidationError

from tao_bevfusion import api
from tao_bevfusion.present.dashboard import PAGE_URI, VIEW_KEY, page_html

log = logging.getLogger("tao_bevfusion.mcpext.apps")


def apps_extension() -> Apps:
    """The Apps extension with the one dashboard page (no network: empty CSP domain lists)."""
    apps = Apps()
    apps.add_html_resource(
        PAGE_URI,
        page_html(),
        name="dashboard",
        title="tao-bevfusion dashboard",
        description="A run, a study, detections or a comparison, drawn from get_job/list_jobs.",
        csp=ResourceCsp(),
        prefers_border=True,
    )
    return apps


def tool_meta(t: api.ToolDef) -> dict[str, Any] | None:
    """`_meta.ui` for the tools the dashboard draws (get_job, list_jobs); None for the others."""
    return {"ui": {"resourceUri": PAGE_URI}} if t.view is not None else None


def checked_actions(actions: dict[str, Any]) -> dict[str, Any]:
    """Keep only button calls that the tool's own input model accepts (what an agent's call must pass)."""
    kept = {}
    for name, action in actions.items():
        try:
            api.tool(action["tool"]).input.model_validate(action["arguments"])
        except (StopIteration, KeyError, ValidationError) as exc:
            log.warning("dashboard action %s dropped: %s", name, str(exc)[:200])
            continue
        kept[name] = action
    return kept


def view_meta(
    t: api.ToolDef, inp: Any, model: Any, app: Any, ctx: Context | None
) -> dict[str, Any] | None:
    """The result `_meta` for an Apps client, else None (the result stays as it always was)."""
    if t.view is None or ctx is None or not client_supports_apps(ctx):
        return None
    view = t.view(inp, model, app)
    view["actions"] = checked_actions(view.get("actions", {}))
    return {VIEW_KEY: view}
