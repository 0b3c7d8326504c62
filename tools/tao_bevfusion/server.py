"""The MCP server: a thin layer over tao_bevfusion.api. Each tool's arguments come from the same pydantic model that
validates them; results carry a short text digest plus structured content (published as outputSchema).

    tao-bevfusion serve                      # stdio
    tao-bevfusion serve --transport http --host 127.0.0.1 --port 8765   # Authorization: Bearer <token>
"""

import base64
import functools
import inspect
import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import anyio
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, CallToolResult, ImageContent, TextContent, ToolAnnotations
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import PydanticUndefined

from tao_bevfusion import api
from tao_bevfusion.core import caller
from tao_bevfusion.core.calls import call_text
from tao_bevfusion.core.errors import ToolError as ToolFailure
from tao_bevfusion.core.layout import status_path
from tao_bevfusion.core.limits import RESULT_LIMIT
from tao_bevfusion.core.settings import skill_dir
from tao_bevfusion.jobs.context import AppContext, app_context
from tao_bevfusion.jobs.wait import wait_async
from tao_bevfusion.mcpext import apps, consent, updates
from tao_bevfusion.present.crash import resource_crash_text, tool_crash_text
from tao_bevfusion.present.summary import summarize
from tao_bevfusion.specbuild.surface import ACTIONS

log = logging.getLogger("tao_bevfusion.server")
T = TypeVar("T")
TEXT_LIMIT = RESULT_LIMIT
INSTRUCTIONS = (
    "TAO 5.5 BEVFusion (LiDAR + camera 3D detection, KITTI person class). Usual flow: route_request -> "
    "check_dataset -> run_action(dataset_convert) -> run_action(train): AutoML on by default returns a review, "
    "confirm=true starts the study -> "
    "get_job until it ends -> resolve_parent_checkpoint -> run_action(evaluate/inference, parent_job_id=...). "
    "Launches return at once with a job_id; poll get_job (verdicts never trust the exit code alone). "
    "get_job(frames=[...]) shows an inference job's detections as pictures; list_jobs(sort=..., compare=[...]) "
    "compares runs; pass last_job_id to route_request for follow-ups."
)


async def _in_thread(fn: Callable[..., T], *args: Any) -> T:
    """fn(*args) in a worker thread; when the request is cancelled (the caller went away) the handler returns
    at once and the thread stops at its next caller.check_caller()."""
    gone = threading.Event()
    try:
        return await anyio.to_thread.run_sync(
            caller.watched, functools.partial(fn, *args), gone, abandon_on_cancel=True
        )
    except anyio.get_cancelled_exc_class():
        gone.set()
        raise


def _result(model: BaseModel, text: str, extra: list[Any] | None = None) -> CallToolResult:
    if len(text) > TEXT_LIMIT:
        text = text[: TEXT_LIMIT - 40] + "\n… (truncated; see structured content)"
    content: list[Any] = [TextContent(type="text", text=text), *(extra or [])]
    return CallToolResult(content=content, structured_content=model.model_dump(mode="json"))


def _signature(model: type[BaseModel], output: type[BaseModel], with_ctx: bool) -> inspect.Signature:
    params = []
    for name, field in model.model_fields.items():
        default = inspect.Parameter.empty if field.default is PydanticUndefined else field.default
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                        annotation=Annotated[field.annotation, field]))
    if with_ctx:
        params.append(inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=Context))
    return inspect.Signature(params, return_annotation=Annotated[CallToolResult, output])


async def _wait(t: api.ToolDef, model: Any, seconds: int, app: AppContext, ctx: Context | None) -> tuple[Any, str]:
    """Wait for the launched job with progress notifications; the job keeps running if the client leaves."""
    async def report(step: int, job: Any) -> None:
        summary = summarize(job)
        if ctx is not None:
            await ctx.report_progress(step, total=seconds, message=summary.digest[:200])

    try:
        await wait_async(model.job_id, seconds, app, report)
    except anyio.get_cancelled_exc_class():
        log.info("client went away while waiting on %s; the job keeps running", model.job_id)
        raise
    assert t.after_wait is not None
    return await _in_thread(t.after_wait, model, app)


def _images(t: api.ToolDef, inp: Any, model: Any, app: AppContext) -> list[ImageContent]:
    if t.images is None:
        return []
    return [ImageContent(type="image", data=base64.b64encode(png).decode(), mime_type="image/png")
            for _, png in t.images(inp, model, app)]


def _build_tool(t: api.ToolDef) -> Tool:
    async def handler(**kwargs: Any) -> CallToolResult:
        ctx = kwargs.pop("ctx", None)
        try:
            inp = t.input.model_validate(kwargs)
        except ValidationError as exc:  # rules beyond the argument schema (the SDK would say only "Error")
            raise ToolError(f"invalid arguments: {exc}") from exc
        wait = int(getattr(inp, "wait_seconds", 0) or 0) if t.after_wait else 0
        if wait:
            inp = inp.model_copy(update={"wait_seconds": 0})
        try:
            app = app_context()
            if (answered := await consent.ask_first(t, inp, app, ctx)) is not None:
                return answered  # type: ignore[return-value]  # a question, or "nothing was launched"
            model, text = await _in_thread(t.fn, inp, app)
            if wait and getattr(model, "job_id", None):
                model, text = await _wait(t, model, wait, app, ctx)
            extra = await _in_thread(_images, t, inp, model, app)
            view = await _in_thread(apps.view_meta, t, inp, model, app, ctx)
        except ToolFailure as exc:
            raise ToolError(exc.render()) from exc
        except ToolError:
            raise  # already a deliberate tool error (e.g. a refused or malformed approval): not a crash
        except Exception as exc:  # a bug: the type, one line of cause and a next call; traceback to the log only
            log.exception("tool %s crashed", t.name)
            raise ToolError(tool_crash_text(t.name, kwargs, exc)) from exc
        result = _result(model, text, extra)
        result.meta = view  # dashboard data for clients that render MCP Apps; None for everyone else
        return result

    with_ctx = t.after_wait is not None or t.view is not None or t.launch_cost is not None
    signature = _signature(t.input, t.output, with_ctx)
    handler.__name__ = t.name
    handler.__doc__ = t.doc
    handler.__signature__ = signature  # type: ignore[attr-defined]
    handler.__annotations__ = {**{p.name: p.annotation for p in signature.parameters.values()},
                               "return": Annotated[CallToolResult, t.output]}
    tool = Tool.from_function(handler, name=t.name, description=t.doc, meta=apps.tool_meta(t),
                              annotations=ToolAnnotations.model_validate(t.annotations))
    # Unknown arguments are errors (the SDK would drop them silently): the model must hear about a typo.
    base = tool.fn_metadata.arg_model
    # Inputs are never echoed in errors: a key or a megabyte of overrides must not come back.
    tool.fn_metadata.arg_model = type(base.__name__, (base,), {"model_config": ConfigDict(
        extra="forbid", arbitrary_types_allowed=True, hide_input_in_errors=True)})
    tool.parameters["additionalProperties"] = False
    return tool


mcp: MCPServer = MCPServer("tao-bevfusion", version="0.1.0", instructions=INSTRUCTIONS,
                           tools=[_build_tool(t) for t in api.TOOLS], extensions=[apps.apps_extension()],
                           lifespan=updates.lifespan(lambda: mcp._subscriptions))
updates.install(mcp)  # status subscriptions on both protocol eras


def _guarded(fn: Any) -> Any:
    """A resource that crashes answers with the cause and a next call (the SDK would name only the URI); it is
    read in a worker thread that stops when the reader goes away (_in_thread)."""
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await _in_thread(functools.partial(fn, *args, **kwargs))
        except (ResourceError, ToolError):
            raise
        except Exception as exc:
            log.exception("resource %s crashed", fn.__name__)
            raise ResourceError(resource_crash_text(fn.__name__, exc, kwargs.get("job_id"))) from exc
    return wrapper


def _resource(uri: str, **options: Any) -> Any:
    return lambda fn: mcp.resource(uri, **options)(_guarded(fn))


def _job(job_id: str) -> tuple[AppContext, Any]:
    app = app_context()
    try:
        return app, app.store.get(job_id)
    except ToolFailure as exc:
        raise ResourceNotFoundError(exc.render()) from exc


def _tail(path: Path, secrets: list[str], limit: int = 64 * 1024) -> str:
    """The file's last `limit` bytes, secrets redacted before the cut (a key across it leaves no part)."""
    from tao_bevfusion.core.redact import redact_bytes
    from tao_bevfusion.evidence.safeio import read_regular

    probe = read_regular(path, 0, 0)
    if probe is None:
        raise ResourceNotFoundError(f"{path.name} does not exist yet (or is not a regular file)")
    margin = max((len(s) * 6 for s in secrets), default=0)  # a JSON-escaped key is at most 6 bytes a char
    got = read_regular(path, max(0, probe[0] - limit - margin), limit + margin)
    size, data = got if got else (0, b"")
    data = redact_bytes(data, secrets)[-limit:]
    prefix = f"[last {len(data)} of {size} bytes; page with get_job_logs]\n" if size > limit else ""
    return prefix + data.decode(errors="replace").replace("\r", "\n")


def _redacted_tail(job_id: str, which: str) -> str:
    from tao_bevfusion.jobs.secrets import job_secrets

    app, job = _job(job_id)
    path = (job.files(app.settings.home).log if which == "log"
            else status_path(job.action, Path(job.results_dir), Path(job.data_root)))
    return _tail(path, job_secrets(job))


@_resource("tao-bevfusion://jobs/{job_id}/log", mime_type="text/plain", description="A job's log (tail).")
def job_log(job_id: str) -> str:
    return _redacted_tail(job_id, "log")


@_resource("tao-bevfusion://jobs/{job_id}/status", mime_type="application/x-ndjson",
              description="A run's status.json records (tail); a study's trials, one JSON line each. "
                          "Subscribable: notifications/resources/updated on a change of state, epoch, best "
                          "trial or verdict.")
def job_status(job_id: str) -> str:
    return updates.study_status_lines(_job(job_id)[1]) or _redacted_tail(job_id, "status")


@_resource("tao-bevfusion://jobs/{job_id}/spec", mime_type="application/yaml",
           description="The job's spec (every secret-named key masked).")
def job_spec(job_id: str) -> str:
    from tao_bevfusion.core.redact import mask_keys
    from tao_bevfusion.core.yamlio import load_recorded
    from tao_bevfusion.specbuild.schema import dump_yaml

    _, job = _job(job_id)
    try:
        data = load_recorded(Path(job.spec_path), job.spec_sha256)  # bounded, and the file launched (hash)
    except ToolFailure as exc:
        raise ResourceNotFoundError(exc.render()) from exc
    return dump_yaml(mask_keys(data))  # a study's spec is its study.json: the key sits under `base`


@_resource("tao-bevfusion://jobs/{job_id}/curve.png", mime_type="image/png",
              description="Training curve of a train job (loss, AP11/AP40 per epoch).")
def job_curve(job_id: str) -> bytes:
    from tao_bevfusion.present.viz.curve import training_curve_png

    _, job = _job(job_id)
    try:
        return training_curve_png(job)
    except ToolFailure as exc:
        raise ResourceNotFoundError(exc.render()) from exc


def _picture(job_id: str, draw: Any) -> bytes:
    _, job = _job(job_id)
    try:
        png: bytes = draw(job)
        return png
    except ToolFailure as exc:
        raise ResourceNotFoundError(exc.render()) from exc


@_resource("tao-bevfusion://jobs/{job_id}/bev/{frame}.png", mime_type="image/png",
              description="Inference job: one frame from above (points by height, predicted and GT boxes).")
def job_bev(job_id: str, frame: str) -> bytes:
    from tao_bevfusion.present.viz.report import bev_png

    return _picture(job_id, lambda job: bev_png(job, frame))


@_resource("tao-bevfusion://jobs/{job_id}/camera/{frame}.png", mime_type="image/png",
              description="Inference job: one frame's camera image with the 3D boxes projected (P2, R0, Tr).")
def job_camera(job_id: str, frame: str) -> bytes:
    from tao_bevfusion.present.viz.report import camera_png

    return _picture(job_id, lambda job: camera_png(job, frame))


@_resource("tao-bevfusion://jobs/{job_id}/sheet.png", mime_type="image/png",
              description="Inference job: contact sheet of up to 50 frames (BEV thumbnails).")
def job_sheet(job_id: str) -> bytes:
    from tao_bevfusion.present.viz.report import sheet_png

    return _picture(job_id, lambda job: sheet_png(job)[0])


@_resource("tao-bevfusion://skill", mime_type="text/markdown", description="The skill document (SKILL.md).")
def skill_doc() -> str:
    return (skill_dir() / "skill" / "SKILL.md").read_text()


@_resource("tao-bevfusion://schemas/{action}", mime_type="application/json",
              description="The generated JSON Schema (2020-12) of an action's 5.5 spec.")
def schema(action: str) -> str:
    return _artifact(action, "schemas/{}.schema.json")


@_resource("tao-bevfusion://templates/{action}", mime_type="application/yaml",
              description="The generated KITTI-correct 5.5 spec template of an action.")
def template(action: str) -> str:
    return _artifact(action, "references/spec_template_{}.yaml")


def _artifact(action: str, pattern: str) -> str:
    if action not in ACTIONS:
        raise ResourceNotFoundError(f"unknown action {action!r}; one of {list(ACTIONS)}")
    return (skill_dir() / pattern.format(action)).read_text()


@mcp.prompt(description="Walk through convert -> train -> evaluate -> inference on a KITTI root.")
def bevfusion_pipeline(data_root: str, num_epochs: str = "2") -> str:
    def step(tool: str, **args: Any) -> str:  # the user's values JSON-encoded: one call whatever they contain
        return call_text(tool, {"data_root": data_root, **args})

    if not num_epochs.strip().isdigit():
        raise MCPError(INVALID_PARAMS, f"num_epochs: {json.dumps(num_epochs[:40])} is not a whole number; pass "
                       "e.g. '2'")
    epochs = int(num_epochs)
    return (
        f"Run the TAO 5.5 BEVFusion pipeline on the KITTI root {json.dumps(data_root)}:\n"
        f"1. {step('check_dataset', action='dataset_convert')}; fix every error it lists.\n"
        f"2. {step('run_action', action='dataset_convert')}; poll get_job until it ends.\n"
        f"3. {step('run_action', action='train', request='<the user words>')}. With the AutoML "
        "policy on (the default) it returns state 'review': show the review to the user and, once they agree, "
        "repeat the call with confirm=true; the study runs in the background (poll get_job on its id). If the "
        f"user asked for plain training, pass automl_policy='off' and overrides={{'num_epochs': {epochs}}}; "
        "poll get_job (report epoch, loss, AP11).\n"
        "4. resolve_parent_checkpoint(parent_job_id=<train job or study>) and tell the user which epoch and why.\n"
        f"5. {step('run_action', action='evaluate', parent_job_id='<train job id>')}; report AP11/AP40.\n"
        f"6. {step('run_action', action='inference', parent_job_id='<train job id>')}.\n"
        "Never report success from an exit code; use get_job's verdict and next_steps."
    )


def serve(transport: str = "stdio", host: str = "127.0.0.1", port: int = 8765, *,
          token_file: Path | None = None, allow_remote: bool = False, allowed_hosts: list[str] | None = None) -> None:
    """stdio, or streamable HTTP behind a bearer token (tao_bevfusion.httpauth)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if transport == "stdio":
        mcp.run()
        return
    from tao_bevfusion.core.settings import Settings
    from tao_bevfusion.httpauth import serve_http

    serve_http(mcp, Settings.from_env().home, host, port, token_file=token_file, allow_remote=allow_remote,
               extra_hosts=allowed_hosts)
