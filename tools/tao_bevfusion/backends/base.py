"""The backend contract, on one screen.

A backend turns a LaunchRequest (plain data: what to run, with which mounts, env, GPUs and nodes) into a
Plan of its own type, the exact request it will make (docker-py arguments, a host argv, later an sbatch
script or Kubernetes manifests). The plan *is* the dry run: `submit(plan)` runs that plan and nothing else.

    plan = backend.plan(request)       # pure: no engine needed
    checks = backend.preflight(plan)   # engine/image/GPU checks; failures stop the launch with the fix
    handle = backend.submit(plan)      # starts it; the handle is stored with the job
    backend.poll(handle) / sync_logs(handle, log) / cancel(handle, force) / find(job_id) / cleanup(handle)

A backend declares what it can do in `capabilities` and its own options in `options_model`; no other
module checks a backend's name. Register a new one in tao_bevfusion.backends.registry (or through the
`tao_bevfusion.backends` entry-point group).
"""

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from tao_bevfusion.core.paths import Mount

if TYPE_CHECKING:
    from tao_bevfusion.core.settings import Settings


class Capabilities(BaseModel):
    maps_paths_into_container: bool = Field(
        description="Specs see container paths (/data, /results/...)."
    )
    multi_node: bool = Field(description="Can run one job across several nodes.")
    gpu_pinning: bool = Field(description="Can give a job specific host GPU ids.")
    reattach_by_job_id: bool = Field(
        description="find(job_id) can recover a handle that was never stored."
    )
    queues: bool = Field(
        default=False,
        description=(
            "submit only queues the job: it is pending until the scheduler starts it (poll says so)."
        ),
    )

    @property
    def state_after_submit(self) -> str:
        """The job state a successful submit records: pending where the scheduler only queued it."""
        return "pending" if self.queues else "running"


class BackendOptions(BaseModel):
    """Options only one backend understands (run_action's `backend_options`)."""

    model_config = ConfigDict(extra="forbid")

    @classmethod
    def from_user(cls, raw: dict[str, Any], settings: "Settings") -> "BackendOptions":
        """Validate the caller's options, filling defaults that come from the settings."""
        return cls.model_validate(raw)


class LaunchRequest(BaseModel):
    """Backend-neutral description of one launch."""

    job_id: str
    action: str
    subtask: str = Field(description="The `bevfusion <subtask>` CLI verb.")
    spec_host_path: str
    spec_container_path: str
    results_dir: str
    results_container_dir: str
    home_dir: str = Field(description="Writable HOME for the job (as the job sees it).")
    cache_dir: str = Field(
        description="Writable TAO_TOOLKIT_CACHE and framework caches (as the job sees it)."
    )
    mounts: list[Mount]
    image: str
    gpus: list[str] | None = Field(
        default=None, description="Host GPU ids; None = the first gpus_per_node; [] = none."
    )
    gpus_per_node: int = 1
    num_nodes: int = 1
    env: dict[str, str] = Field(
        default_factory=dict, description="Validated caller env, the same on every node."
    )
    node_env: list[dict[str, str]] = Field(
        default_factory=list, description="Extra env per node (index = node rank)."
    )
    log_path: str
    options: dict[str, Any] = Field(default_factory=dict, description="Validated backend_options.")
    attempt: int = Field(
        default=1,
        ge=1,
        description=(
            "Which attempt of the job this launch is (an infrastructure retry is 2, 3...): backends that keep "
            "per-launch files (Slurm's log folder) give each attempt its own."
        ),
    )
    deadline_seconds: int | None = Field(
        default=None,
        description=(
            "Wall-clock limit of the run (max_hours / max_gpu_hours); schedulers enforce it themselves (Slurm "
            "--time, Kubernetes activeDeadlineSeconds), docker and local through the job's watchdog."
        ),
    )


class Check(BaseModel):
    name: str
    ok: bool
    severity: Literal["error", "warning", "info"] = "error"
    message: str
    fix: str = ""


class Plan(BaseModel):
    """What every backend's plan shows; subclasses add the exact request they make."""

    backend: str
    job_id: str
    command: list[str] = Field(
        description="The command the job runs (inside the container, or on the host)."
    )
    equivalent_cli: list[str] = Field(
        description="The same launch as a shell argv, for humans to read."
    )
    mounts: list[Mount]
    env: dict[str, str] = Field(description="Environment of the job (never carries secrets).")
    user: str | None = None
    devices: list[str] | None = Field(
        default=None, description="Host GPU ids requested; None or [] = no GPUs."
    )
    notes: list[str] = Field(default_factory=list)
    preflight: list[Check] = Field(default_factory=list)


class BackendStatus(BaseModel):
    state: Literal["running", "exited", "missing", "created", "queued"]
    exit_code: int | None = None
    oom_killed: bool = False
    error: str | None = None


class Backend(ABC):
    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    options_model: ClassVar[type[BackendOptions]] = BackendOptions
    plan_model: ClassVar[type["Plan"]] = (
        Plan  # what plan() returns; a saved plan is read back as this
    )

    @abstractmethod
    def plan(self, request: LaunchRequest) -> Plan:
        """The exact launch, as data. Pure: no engine contact."""

    @abstractmethod
    def preflight(self, plan: Plan) -> list[Check]:
        """Checks against the engine/host; a failed check (ok=False) stops the launch."""

    @abstractmethod
    def submit(self, plan: Plan) -> str:
        """Start exactly `plan`; return the handle poll/cancel take. Raises EngineError/InputError."""

    @abstractmethod
    def poll(self, handle: str) -> BackendStatus:
        """Where the job is; `missing` when the engine no longer knows it."""

    def sync_logs(self, handle: str, log_path: Path) -> None:  # noqa: B027 - optional hook
        """Append output produced since the last sync to `log_path` (backends that write it directly skip)."""

    @abstractmethod
    def cancel(self, handle: str, force: bool) -> None:
        """Stop the job (graceful, or at once with force). Idempotent."""

    def find(self, job_id: str, plan: dict[str, Any] | None = None) -> str | None:
        """Recover a handle from the job id (when capabilities.reattach_by_job_id); `plan`: the job's
        recorded plan (where it was submitted), when there is one."""
        return None

    def cleanup(self, handle: str) -> None:  # noqa: B027 - optional hook
        """Release what the ended job still holds (a stopped container)."""
