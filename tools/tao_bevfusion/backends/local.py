"""The local backend: the same command as a host process (an agent inside a TAO container, or a host with
TAO installed). Paths in the spec are host paths. TAO_BEVFUSION_LOCAL_CLI overrides the `bevfusion`
command: a path, or a JSON list such as ["python3", "/opt/standin.py"]."""

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from tao_bevfusion.backends.base import (
    Backend,
    BackendStatus,
    Capabilities,
    Check,
    LaunchRequest,
    Plan,
)
from tao_bevfusion.backends.environment import host_env, job_env
from tao_bevfusion.core import layout
from tao_bevfusion.core.errors import EngineError, InputError, problem
from tao_bevfusion.core.settings import Settings, with_package_on_pythonpath


def cli_prefix(settings: Settings | None = None) -> list[str]:
    raw = (settings or Settings.from_env()).local_cli
    if raw.strip().startswith("["):
        value = json.loads(raw)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or not value:
            raise InputError(
                problem(
                    "TAO_BEVFUSION_LOCAL_CLI",
                    "must be a JSON list of strings",
                    'e.g. ["python3", "/path/bevfusion_standin.py"]',
                )
            )
        return value
    return [raw]


def _proc_start(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int, start: str) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z" and fields[19] == start


class LocalPlan(Plan):
    argv: list[str] = Field(
        description="The exact host argv (the exit-recording runner around the command)."
    )
    cwd: str
    exit_file: str
    log_path: str


class LocalBackend(Backend):
    name = "local"
    plan_model = LocalPlan
    capabilities: ClassVar[Capabilities] = Capabilities(
        maps_paths_into_container=False,
        multi_node=False,
        gpu_pinning=True,
        reattach_by_job_id=False,
    )

    def plan(self, request: LaunchRequest) -> LocalPlan:
        req = request
        command = [*cli_prefix(), req.subtask, "-e", req.spec_host_path]
        env = job_env(req.home_dir, req.cache_dir, req.env)
        exit_file = str(layout.exit_record(Path(req.log_path)))
        argv = [
            sys.executable,
            "-m",
            "tao_bevfusion.backends.local_runner",
            exit_file,
            "--",
            *command,
        ]
        notes = ["host process in its own process group; spec paths are host paths"]
        if req.gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(req.gpus)
            notes.append(f"CUDA_VISIBLE_DEVICES={env['CUDA_VISIBLE_DEVICES']}")
        return LocalPlan(
            backend=self.name,
            job_id=req.job_id,
            command=command,
            equivalent_cli=argv,
            argv=argv,
            cwd=req.results_dir,
            exit_file=exit_file,
            log_path=req.log_path,
            mounts=[],
            env=env,
            user=f"{os.getuid()}:{os.getgid()}",
            devices=req.gpus or [],
            notes=notes,
        )

    def preflight(self, plan: Plan) -> list[Check]:
        exe = plan.command[0]
        found = Path(exe).is_file() or any(
            (Path(p) / exe).is_file() for p in os.environ.get("PATH", "").split(":")
        )
        if not found:
            return [
                Check(
                    name="cli",
                    ok=False,
                    message=f"`{exe}` is not on this host",
                    fix="run inside the TAO 5.5 container, set TAO_BEVFUSION_LOCAL_CLI, or use backend='docker'",
                )
            ]
        return [Check(name="cli", ok=True, severity="info", message=f"{exe} found")]

    def submit(self, plan: Plan) -> str:
        assert isinstance(plan, LocalPlan)
        env = {
            **host_env(dict(os.environ)),
            **plan.env,
        }  # an allow-list: no credentials of the server
        with_package_on_pythonpath(env)
        try:
            Path(plan.cwd).mkdir(parents=True, exist_ok=True)
            with open(plan.log_path, "ab") as log:
                proc = subprocess.Popen(
                    plan.argv,
                    cwd=plan.cwd,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
        except OSError as exc:
            raise EngineError(
                problem(
                    "backend",
                    f"could not start the host process: {exc}",
                    "check the results folder and TAO_BEVFUSION_LOCAL_CLI",
                )
            ) from exc
        return f"pid:{proc.pid}:{_proc_start(proc.pid)}:{plan.exit_file}"

    @staticmethod
    def _parse(handle: str) -> tuple[int, str, str]:
        _, pid, start, exit_file = handle.split(":", 3)
        return int(pid), start, exit_file

    def poll(self, handle: str) -> BackendStatus:
        pid, start, exit_file = self._parse(handle)
        for _ in range(
            2
        ):  # the runner writes exit.json just before it exits: look again after reaping
            if Path(exit_file).is_file():
                data = json.loads(Path(exit_file).read_text())
                return BackendStatus(state="exited", exit_code=int(data["exit_code"]))
            with contextlib.suppress(ChildProcessError):
                os.waitpid(
                    pid, os.WNOHANG
                )  # reap when it is this process's child; harmless otherwise
            if _alive(pid, start):
                return BackendStatus(state="running")
        return BackendStatus(state="missing")

    def cancel(self, handle: str, force: bool) -> None:
        pid, start, _ = self._parse(handle)
        if _proc_start(pid) != start:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL if force else signal.SIGTERM)
