"""tao-bevfusion: the CLI. Every MCP tool is a subcommand whose options come from the tool's input model.

    tao-bevfusion serve [--transport stdio|http]
    tao-bevfusion check-dataset --data-root /abs/kitti --action dataset_convert
    tao-bevfusion run-action --action train --data-root /abs/kitti --automl-policy off \
        --overrides '{"num_epochs": 2}' --follow
    tao-bevfusion get-job --job-id j... [--curve train.png] [--json]
"""

import argparse
import json
import os
import re
import sys
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticUndefined

from tao_bevfusion import api
from tao_bevfusion.core.errors import InputError, ToolError, problem
from tao_bevfusion.core.states import ACTIVE_STATES
from tao_bevfusion.jobs.context import AppContext, app_context
from tao_bevfusion.jobs.wait import wait_sync
from tao_bevfusion.present.summary import summarize


def _scalar(ann: Any) -> tuple[Any, list[Any] | None]:
    """(argparse type, choices) for a field annotation; complex values are parsed as JSON."""
    if get_origin(ann) in (Union, types.UnionType):
        members = [a for a in get_args(ann) if a is not type(None)]
        return _scalar(members[0]) if len(members) == 1 else (json.loads, None)
    if get_origin(ann) is Literal:
        return str, list(get_args(ann))
    if ann in (int, float, str):
        return ann, None
    return json.loads, None


# argv is readable by every local user (/proc/<pid>/cmdline): secrets come from a file or the environment.
SECRET_FIELDS = {"encryption_key": "TAO_BEVFUSION_ENCRYPTION_KEY"}


def _add_secret_option(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument(
        "--" + name.replace("_", "-") + "-file",
        dest=name + "_file",
        type=Path,
        help=f"file holding the {name.replace('_', ' ')} (or set {SECRET_FIELDS[name]}); "
        "never given on the command line",
    )


def _secrets(model: type[BaseModel], args: argparse.Namespace) -> dict[str, str]:
    out = {}
    for name, env in SECRET_FIELDS.items():
        if name not in model.model_fields:
            continue
        path: Path | None = getattr(args, name + "_file", None)
        try:
            value = path.read_text().rstrip("\r\n") if path else os.environ.get(env, "")
        except OSError as exc:
            raise InputError(
                problem(
                    f"--{name.replace('_', '-')}-file",
                    f"cannot read {path}: {exc.strerror}",
                    "give a readable file (chmod 600) holding only the key",
                )
            ) from exc
        if value:
            out[name] = value
    return out


def _add_model_options(parser: argparse.ArgumentParser, model: type[BaseModel]) -> None:
    for name, field in model.model_fields.items():
        if name in SECRET_FIELDS:
            _add_secret_option(parser, name)
            continue
        flag = "--" + name.replace("_", "-")
        required = field.default is PydanticUndefined
        help_text = (field.description or "").replace("%", "%%")
        if field.annotation is bool:
            parser.add_argument(
                flag,
                dest=name,
                action=argparse.BooleanOptionalAction,
                default=field.default,
                help=help_text,
            )
            continue
        kind, choices = _scalar(field.annotation)
        if kind is json.loads:
            help_text += " (JSON)"
        parser.add_argument(
            flag,
            dest=name,
            type=kind,
            choices=choices,
            required=required,
            default=None if required else field.default,
            help=help_text,
        )


def _progress_bar(summary: Any) -> str:
    p = summary.progress
    if p.max_epochs and p.epoch:
        if summary.state != "running":
            done = 1.0
        elif p.iters_per_epoch and p.iteration:
            done = min(1.0, p.iteration / (p.iters_per_epoch * p.max_epochs))
        else:
            done = (p.epoch - 1) / p.max_epochs
        bar = "#" * int(done * 30)
        return f"[{bar:<30}] {summary.digest[:90]}"
    return summary.digest[:120]


def follow(job_id: str, ctx: AppContext, interval: float = 2.0) -> Any:
    """Wait until the job ends, drawing a one-line progress bar on stderr (the CLI has no 60 s limit)."""

    def draw(job: Any) -> None:
        sys.stderr.write("\r" + terminal_safe(_progress_bar(summarize(job))).ljust(130))
        sys.stderr.flush()

    wait_sync(job_id, None, ctx, on_progress=draw, interval=interval)
    sys.stderr.write("\n")
    return api.tool("get_job").fn(api.JobIdInput(job_id=job_id), ctx)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tao-bevfusion", description="TAO 5.5 BEVFusion agent skill plugin"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the MCP server")
    serve.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument(
        "--token-file",
        type=Path,
        help="http: file (mode 0600) holding the bearer token; default "
        "TAO_BEVFUSION_HTTP_TOKEN, else one generated into the state dir and printed once",
    )
    serve.add_argument(
        "--allow-remote",
        action="store_true",
        help="http: allow a non-loopback --host (needs TAO_BEVFUSION_HTTP_TOKEN or --token-file)",
    )
    serve.add_argument(
        "--allowed-host",
        dest="allowed_hosts",
        action="append",
        default=[],
        metavar="NAME",
        help="http: another Host name clients use to reach the server (repeatable)",
    )
    sub.add_parser(
        "generate", help="regenerate schemas/ and references/ (--check: fail when stale)"
    ).add_argument("--check", action="store_true")
    for t in api.TOOLS:
        p = sub.add_parser(t.name.replace("_", "-"), help=t.doc.split(". ")[0], description=t.doc)
        _add_model_options(p, t.input)
        p.add_argument("--json", action="store_true", help="print the structured result as JSON")
        if t.returns_job:
            p.add_argument(
                "--follow", action="store_true", help="poll until the job ends, with a progress bar"
            )
        if t.image_flag:
            p.add_argument(
                f"--{t.image_flag}",
                dest="image_out",
                type=Path,
                help="write the picture (PNG) here",
            )
        if t.images_dir_flag:
            p.add_argument(
                f"--{t.images_dir_flag}",
                dest="images_dir",
                type=Path,
                metavar="DIR",
                help="write every picture (BEV, camera, contact sheet, chart) into DIR",
            )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        from tao_bevfusion.server import serve

        try:
            serve(
                args.transport,
                args.host,
                args.port,
                token_file=args.token_file,
                allow_remote=args.allow_remote,
                allowed_hosts=args.allowed_hosts,
            )
        except ToolError as exc:
            print(exc.render(), file=sys.stderr)
            return 2
        return 0
    if args.command == "generate":
        from tao_bevfusion.generate import main as generate

        return generate(["--check"] if args.check else [])
    return _run_tool(api.tool(args.command.replace("-", "_")), args)


def _write_pictures(folder: Path, pictures: list[tuple[str, bytes]]) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    for name, png in pictures:
        (folder / Path(name).name).write_bytes(png)
    return f"{len(pictures)} pictures written to {folder}: " + ", ".join(n for n, _ in pictures[:8])


def _run_tool(t: api.ToolDef, args: argparse.Namespace) -> int:
    fields = {
        k: getattr(args, k) for k in t.input.model_fields if getattr(args, k, None) is not None
    }
    image_out: Path | None = getattr(args, "image_out", None)
    try:
        ctx = app_context()
        if image_out and t.image_request_field:
            fields[t.image_request_field] = True
        images_dir: Path | None = getattr(args, "images_dir", None)
        if images_dir and t.images_dir_request_field:
            fields[t.images_dir_request_field] = True
        fields.update(_secrets(t.input, args))
        inp = t.input.model_validate(fields)
        model, text = t.fn(inp, ctx)
        job_id = getattr(model, "job_id", None)
        if (
            getattr(args, "follow", False)
            and job_id
            and getattr(model, "state", "") in ACTIVE_STATES
        ):
            model, text = follow(job_id, ctx)
        if image_out and t.images:
            pictures = t.images(inp, model, ctx)
            if pictures:
                image_out.write_bytes(pictures[0][1])
                text += f"\npicture written to {image_out}"
        if images_dir and t.images:
            text += "\n" + _write_pictures(images_dir, t.images(inp, model, ctx))
    except ToolError as exc:
        print(terminal_safe(exc.render()), file=sys.stderr)
        return 2
    except ValidationError as exc:
        print(terminal_safe(f"invalid arguments: {exc}"), file=sys.stderr)
        return 2
    print(terminal_safe(api.dumps(model) if args.json else text))
    return 0


CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def terminal_safe(text: str) -> str:
    """Text from jobs (status messages, log lines, file names) shown on a terminal: every control character
    but newline and tab written as a visible escape, so no OSC 52 clipboard write, title change, screen
    clear or bidi reordering reaches the terminal."""
    return CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode(), text)


if __name__ == "__main__":
    raise SystemExit(main())
