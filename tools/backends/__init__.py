"""Backends turn a LaunchRequest into a printable LaunchPlan (the dry run) and run exactly that plan.

    plan = backend.plan(request)        # pure data: argv, mounts, env (secrets masked), user, devices
    handle = backend.submit(plan)       # starts it
    backend.poll(handle) / sync_logs(handle, ...) / cancel(handle) / find(job_id) / cleanup(handle)

Backends are loaded lazily by name, so planning never needs the Docker SDK or an engine.
"""

import importlib
import re
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from tools.errors import ToolInputError, problem
from tools.paths import Mount

REGISTRY = {"docker": "tools.backends.docker:DockerBackend", "local": "tools.backends.local:LocalBackend"}
PROTECTED_ENV = {
    "TELEMETRY_OPT_OUT", "HOME", "TAO_TOOLKIT_CACHE", "XDG_CACHE_HOME", "TORCH_HOME", "MPLCONFIGDIR",
    "NUMBA_CACHE_DIR", "TRITON_CACHE_DIR", "HF_HOME", "JOB_ID", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES",
    "TAO_VISIBLE_DEVICES", "CLOUD_BASED", "PATH", "LD_PRELOAD", "LD_LIBRARY_PATH", "PYTHONPATH", "PYTHONHOME",
}
SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH)", re.I)
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


class LaunchRequest(BaseModel):
    job_id: str
    action: str
    subtask: str
    spec_host_path: str
    spec_container_path: str
    results_dir: str
    results_container_dir: str
    home_dir: str = Field(description="Writable HOME for the job (container path).")
    cache_dir: str = Field(description="Writable TAO_TOOLKIT_CACHE and framework caches (container path).")
    mounts: list[Mount]
    image: str
    gpus: list[str] | None = Field(default=None, description="Host GPU ids; None = the first num_gpus; [] = none.")
    num_gpus: int = 1
    env: dict[str, str] = Field(default_factory=dict)
    network: Literal["none", "host", "bridge"] = "none"
    shm_size: str = "16G"
    mem_limit: str | None = None
    memlock: int = Field(default=-1, description="RLIMIT_MEMLOCK in bytes for the container; -1 = unlimited.")
    log_path: str


class Check(BaseModel):
    name: str
    ok: bool
    severity: Literal["error", "warning", "info"] = "error"
    message: str
    fix: str = ""


class LaunchPlan(BaseModel):
    backend: str
    job_id: str
    command: list[str] = Field(description="The command the container (or host) runs.")
    equivalent_cli: list[str] = Field(description="The same launch as a docker/host argv, for humans to read.")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Backend call arguments (env masked).")
    mounts: list[Mount]
    env: dict[str, str] = Field(description="Environment (secret values masked).")
    user: str | None = None
    devices: list[str] | None = Field(default=None, description="Host GPU ids requested; None or [] = no GPUs.")
    notes: list[str] = Field(default_factory=list)
    preflight: list[Check] = Field(default_factory=list)


class BackendStatus(BaseModel):
    state: Literal["running", "exited", "missing", "created"]
    exit_code: int | None = None
    oom_killed: bool = False
    error: str | None = None


class Backend(Protocol):
    name: str

    def plan(self, req: LaunchRequest) -> LaunchPlan: ...
    def preflight(self, plan: LaunchPlan, req: LaunchRequest) -> list[Check]: ...
    def submit(self, plan: LaunchPlan, req: LaunchRequest) -> str: ...
    def poll(self, handle: str) -> BackendStatus: ...
    def sync_logs(self, handle: str, log_path: str, cursor: dict[str, Any]) -> dict[str, Any]: ...
    def cancel(self, handle: str, force: bool) -> None: ...
    def find(self, job_id: str) -> str | None: ...
    def cleanup(self, handle: str) -> None: ...


def get_backend(name: str) -> Backend:
    if name not in REGISTRY:
        raise ToolInputError(problem("backend", f"unknown backend {name!r}", f"use one of {sorted(REGISTRY)}"))
    module, cls = REGISTRY[name].split(":")
    backend: Backend = getattr(importlib.import_module(module), cls)()
    return backend


def validate_env(env: dict[str, Any] | None) -> dict[str, str]:
    """Caller env must be plain, non-secret, and must not override the launch's safety settings."""
    out, problems = {}, []
    for name, value in (env or {}).items():
        if not isinstance(name, str) or not ENV_NAME.match(name):
            problems.append(problem(f"env.{name}", "not a valid variable name", "use [A-Za-z_][A-Za-z0-9_]*"))
        elif name.upper() in PROTECTED_ENV:
            problems.append(problem(f"env.{name}", "is set by the launcher for safety/correctness",
                                    "remove it (caches, telemetry opt-out, devices and JOB_ID are managed)"))
        elif SECRET_NAME.search(name):
            problems.append(problem(f"env.{name}", "looks like a secret; secrets never go in job env or logs",
                                    "use encryption_key for the model key; keep other credentials out of the job"))
        elif not isinstance(value, (str, int, float, bool)) or len(str(value)) > 4096 or "\x00" in str(value):
            problems.append(problem(f"env.{name}", "value must be a short string", "pass a string value"))
        else:
            out[name] = str(value)
    if problems:
        raise ToolInputError(problems, headline="refused env")
    return out


def container_env(req: LaunchRequest) -> dict[str, str]:
    """The environment every launch gets (contract §1.4, §8.3), plus the caller's validated extras."""
    cache = req.cache_dir
    env = {
        "TELEMETRY_OPT_OUT": "yes",
        "HOME": req.home_dir,
        "TAO_TOOLKIT_CACHE": cache,
        "XDG_CACHE_HOME": cache,
        "TORCH_HOME": f"{cache}/torch",
        "MPLCONFIGDIR": f"{cache}/matplotlib",
        "NUMBA_CACHE_DIR": f"{cache}/numba",
        "TRITON_CACHE_DIR": f"{cache}/triton",
    }
    env.update(req.env)
    return env
