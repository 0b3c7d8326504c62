"""The docker backend (docker SDK): the launch recipe of docs/container-contract.md §8.3, never an implicit pull.

Its plan is the exact keyword arguments of `docker.containers.run`, plus the equivalent `docker run` argv."""

import contextlib
import fcntl
import json
import os
import resource
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.types import DeviceRequest, Ulimit
from pydantic import Field

from tao_bevfusion.backends.base import Backend, BackendStatus, Capabilities, Check, LaunchRequest, Plan
from tao_bevfusion.backends.docker_options import DockerOptions
from tao_bevfusion.backends.environment import job_env
from tao_bevfusion.backends.gpus import host_gpus
from tao_bevfusion.backends.logsync import LogWindow
from tao_bevfusion.core import layout
from tao_bevfusion.core.errors import EngineError, InputError, problem
from tao_bevfusion.core.fsio import atomic_write

LABEL_JOB, LABEL_ACTION, LABEL_PLUGIN = layout.LABEL_JOB, layout.LABEL_ACTION, layout.LABEL_PLUGIN
NO_GPU_RUNTIME = 'could not select device driver ""'
HARDWARE = "BEVFusion guidance: minimum 2 GPUs, 4 recommended, 24 GB+ each (A100 recommended)"


_CLIENTS: dict[str, docker.DockerClient] = {}


def _client() -> docker.DockerClient:
    """One client per engine address per process (each new client negotiates the API version)."""
    key = os.environ.get("DOCKER_HOST", "")
    if key in _CLIENTS:
        return _CLIENTS[key]
    try:
        client = docker.from_env(timeout=30)
        client.ping()
        _CLIENTS[key] = client
        return client
    except DockerException as exc:  # the engine's trouble, not the input's: the same call works once it is up
        raise EngineError(problem(
            "backend", f"the Docker engine is not reachable ({exc.__class__.__name__}: {str(exc)[:160]})",
            "start dockerd (or set DOCKER_HOST to a running engine), or use backend='local' inside a TAO container",
            code="ENGINE_UNREACHABLE")) from exc


@contextlib.contextmanager
def _engine_errors() -> Iterator[None]:
    """A lost engine mid-job is an actionable error, not a crash; the job record is left as it was."""
    try:
        yield
    except (DockerException, requests.RequestException) as exc:
        if isinstance(exc, (NotFound, ImageNotFound)):
            raise
        _CLIENTS.clear()
        raise EngineError(problem(
            "backend", f"lost contact with the Docker engine ({exc.__class__.__name__}); the job record is kept",
            "check that dockerd is running (and DOCKER_HOST), then call get_job again: the job re-attaches by label",
            code="ENGINE_UNREACHABLE")) from exc




class DockerPlan(Plan):
    run_kwargs: dict[str, Any] = Field(description="The exact keyword arguments of docker containers.run.")


def _cli(kwargs: dict[str, Any], devices: list[str], opts: DockerOptions, memlock: int) -> list[str]:
    cli = ["docker", "run", "-d", "--name", kwargs["name"], "--pull", "never"]
    for key, value in kwargs["labels"].items():
        cli += ["--label", f"{key}={value}"]
    if devices:
        cli += ["--gpus", f'"device={",".join(devices)}"']
    cli += ["--shm-size", opts.shm_size, "--ulimit", f"memlock={memlock}", "--ulimit", "stack=67108864",
            "--user", kwargs["user"], "--network", opts.network, "-w", kwargs["working_dir"]]
    if opts.mem_limit:
        cli += ["--memory", opts.mem_limit]
    for key, value in kwargs["environment"].items():
        cli += ["-e", f"{key}={value}"]
    for host, bind in kwargs["volumes"].items():
        cli += ["-v", f"{host}:{bind['bind']}:{bind['mode']}"]
    return [*cli, kwargs["image"], *kwargs["command"]]


class DockerBackend(Backend):
    name = "docker"
    capabilities: ClassVar[Capabilities] = Capabilities(
        maps_paths_into_container=True, multi_node=False, gpu_pinning=True, reattach_by_job_id=True)
    options_model = DockerOptions
    plan_model = DockerPlan

    def plan(self, request: LaunchRequest) -> DockerPlan:
        req = request
        opts = DockerOptions.model_validate(req.options)
        memlock = -1 if opts.memlock is None else opts.memlock
        env = job_env(req.home_dir, req.cache_dir, req.env)
        command = ["bevfusion", req.subtask, "-e", req.spec_container_path]
        devices = [str(g) for g in req.gpus] if req.gpus is not None else [str(i) for i in range(req.gpus_per_node)]
        notes = [] if devices else ["no GPU device request (gpus=[]): for the test stand-in and CPU-only checks"]
        user = f"{os.getuid()}:{os.getgid()}"
        kwargs: dict[str, Any] = {
            "image": req.image, "command": command, "name": layout.job_name(req.job_id), "detach": True,
            "labels": {LABEL_JOB: req.job_id, LABEL_ACTION: req.action, LABEL_PLUGIN: layout.PLUGIN},
            "volumes": {m.host: {"bind": m.container, "mode": m.mode} for m in req.mounts},
            "environment": env, "user": user, "shm_size": opts.shm_size,
            "ulimits": [{"name": "memlock", "soft": memlock, "hard": memlock},
                        {"name": "stack", "soft": 67108864, "hard": 67108864}],
            "network_mode": opts.network, "working_dir": req.results_container_dir,
        }
        if devices:
            kwargs["device_requests"] = [{"device_ids": devices, "capabilities": [["gpu"]]}]
        if opts.mem_limit:
            kwargs["mem_limit"] = opts.mem_limit
        return DockerPlan(backend=self.name, job_id=req.job_id, command=command,
                          equivalent_cli=_cli(kwargs, devices, opts, memlock), run_kwargs=kwargs, mounts=req.mounts,
                          env=env, user=user, devices=devices, notes=notes)

    def preflight(self, plan: Plan) -> list[Check]:
        assert isinstance(plan, DockerPlan)
        image = plan.run_kwargs["image"]
        try:
            client = _client()
        except EngineError as exc:
            return [Check(name="engine", ok=False, message=exc.problems[0].message, fix=exc.problems[0].fix)]
        checks = [Check(name="engine", ok=True, severity="info", message="Docker engine reachable")]
        try:
            client.images.get(image)
            checks.append(Check(name="image", ok=True, severity="info", message=f"{image} is present"))
        except ImageNotFound:
            checks.append(Check(name="image", ok=False, message=f"image {image} is not present locally (no "
                                "implicit pulls)", fix=f"docker pull {image} (or set TAO_BEVFUSION_IMAGE to "
                                "a mirrored image you have)"))
        if plan.devices:
            runtimes = client.info().get("Runtimes", {}) or {}
            if "nvidia" not in runtimes:
                # A heuristic (GPUs can reach containers without a runtime of that name), so it warns; the
                # engine's own refusal at launch is turned into the same advice.
                checks.append(Check(name="gpu_runtime", ok=True, severity="warning", message="GPUs requested but "
                                    "the engine lists no NVIDIA container runtime", fix="install "
                                    "nvidia-container-toolkit, run `nvidia-ctk runtime configure --runtime=docker`, "
                                    "restart dockerd; or pass gpus=[]"))
            checks += _gpu_checks(plan.devices)
        return checks

    def submit(self, plan: Plan) -> str:
        assert isinstance(plan, DockerPlan)
        client = _client()
        kwargs = dict(plan.run_kwargs)
        if "device_requests" in kwargs:
            kwargs["device_requests"] = [DeviceRequest(**d) for d in kwargs["device_requests"]]
        kwargs["ulimits"] = [Ulimit(**u) for u in kwargs["ulimits"]]
        try:
            container = client.containers.run(**kwargs)
        except ImageNotFound as exc:
            raise InputError(problem("image", f"image {kwargs['image']} is not present locally",
                                     f"docker pull {kwargs['image']}, or set TAO_BEVFUSION_IMAGE",
                                     code="IMAGE_MISSING")) from exc
        except APIError as exc:
            self._remove_name(client, kwargs["name"])
            raise _launch_refused(str(exc.explanation or exc)) from exc
        except (DockerException, requests.RequestException) as exc:
            self._remove_name(client, kwargs["name"])
            raise EngineError(problem("backend", f"the Docker engine failed during the launch "
                                      f"({exc.__class__.__name__})", "check dockerd and retry the same call",
                                      code="ENGINE_UNREACHABLE")) from exc
        return str(container.id)

    @staticmethod
    def _remove_name(client: docker.DockerClient, name: str) -> None:
        with contextlib.suppress(NotFound, APIError):
            client.containers.get(name).remove(force=True)

    def poll(self, handle: str) -> BackendStatus:
        try:
            with _engine_errors():
                container = _client().containers.get(handle)
        except NotFound:
            return BackendStatus(state="missing")
        state = container.attrs.get("State", {})
        status = state.get("Status")
        if status in ("running", "restarting", "paused"):
            return BackendStatus(state="running")
        if status == "created":
            return BackendStatus(state="created")
        return BackendStatus(state="exited", exit_code=state.get("ExitCode"), oom_killed=bool(state.get("OOMKilled")),
                             error=state.get("Error") or None)

    def sync_logs(self, handle: str, log_path: Path) -> None:
        """Append output produced since the last sync.

        `since` has 1 s granularity, and stdout/stderr are stamped by separate copiers, so their order in
        the stream is not strictly by time. Lines are de-duplicated by their exact nanosecond stamps within
        the boundary second, never by "newer than the last one" (that would drop an interleaved line); a line
        still unfinished keeps its first partial's stamp, so `since` reaches back to it (logsync.LogWindow).
        """
        try:
            with _engine_errors():
                container = _client().containers.get(handle)
        except NotFound:
            return
        lock_path = layout.log_lock(log_path)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "w") as lock, open(log_path, "ab") as out:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state_file = layout.log_sync_state(log_path)
            state = _read_state(state_file)
            synced = state.get("size")
            if isinstance(synced, int) and os.fstat(out.fileno()).st_size > synced:
                out.truncate(synced)  # lines of a sync whose state was never saved (full disk): written again below
            window = LogWindow.resume(state, log_path)
            start = os.fstat(out.fileno()).st_size
            try:
                self._append(container, out, window)
                out.flush()
                _write_state(state_file, {**window.state(), "size": os.fstat(out.fileno()).st_size})
            except OSError as exc:
                with contextlib.suppress(OSError):
                    out.truncate(start)  # all or nothing: a failed sync leaves no half of itself behind
                if exc.errno is None:  # the engine's log stream broke (container stopping): the next sync retries
                    return
                raise EngineError(problem(str(log_path), f"cannot write the job log: {exc.strerror}",
                                          "free disk space under the state dir, then call get_job again (the job "
                                          "keeps running; its log is synced from the engine)",
                                          code="STATE_DIR_FULL")) from exc
        if window.top > window.boundary:  # the log's mtime is its newest line's time, not the sync's (stalls)
            os.utime(log_path, (window.top, window.top))

    @staticmethod
    def _append(container: Any, out: Any, window: LogWindow) -> None:
        stream = container.logs(stdout=True, stderr=True, timestamps=True, stream=True, follow=False,
                                since=window.since or None)
        for frame in stream:  # one log entry per frame (a long line: several 16 KB entries, same stamp)
            window.append(out, frame)

    def cancel(self, handle: str, force: bool) -> None:
        try:
            container = _client().containers.get(handle)
        except NotFound:
            return
        try:
            if container.status == "created":
                container.remove(force=True)  # never started: nothing to stop, and it must not start later
            elif force:
                container.kill()
            else:
                container.stop(timeout=5)
        except APIError:
            pass  # already stopped

    def find(self, job_id: str, plan: dict[str, Any] | None = None) -> str | None:
        with _engine_errors():
            found = _client().containers.list(all=True, filters={"label": f"{LABEL_JOB}={job_id}"})
        return str(found[0].id) if found else None

    def cleanup(self, handle: str) -> None:
        with contextlib.suppress(NotFound, APIError):
            _client().containers.get(handle).remove(force=True)


def _read_state(path: Path) -> dict[str, Any]:
    """The last sync's state (LogWindow.state and the log's size after it); {} when there is none."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_state(path: Path, state: dict[str, Any]) -> None:
    """Atomically (a torn state file would re-append the whole log)."""
    atomic_write(path, json.dumps(state))


def _gpu_checks(devices: list[str]) -> list[Check]:
    gpus = host_gpus()
    if gpus is None:
        return [Check(name="gpus", ok=True, severity="warning", message="cannot verify the requested GPUs (no "
                      "nvidia-smi on this host)", fix="install the NVIDIA driver utilities")]
    have = dict(gpus)
    missing = [d for d in devices if d not in have]
    if missing:
        return [Check(name="gpus", ok=False, message=f"host GPUs {missing} do not exist (have {sorted(have)})",
                      fix="pass gpus= with existing host ids")]
    checks = []
    if len(devices) < 2:
        checks.append(Check(name="gpu_count", ok=True, severity="warning",
                            message=f"{len(devices)} GPU: a smoke run only. {HARDWARE}"))
    small = [d for d in devices if have[d] < 24 * 1024]
    if small:
        checks.append(Check(name="gpu_memory", ok=True, severity="warning",
                            message=f"GPUs {small} have < 24 GB; lower batch_size to 1-2. {HARDWARE}"))
    return checks


def _launch_refused(text: str) -> EngineError:
    """The engine's refusal of a launch, as the fix the user needs (an engine error: the input was fine)."""
    if NO_GPU_RUNTIME in text or "capabilities: [[gpu]]" in text:
        return EngineError(problem(
            "gpus", f"the engine cannot give GPUs to containers: {text[:300]}",
            "install the NVIDIA driver and nvidia-container-toolkit on this host and restart dockerd "
            "(nvidia-ctk runtime configure --runtime=docker); for a CPU-only check pass gpus=[]",
            code="NO_GPU_RUNTIME"), headline="the engine refused the launch; nothing is running")
    if "error setting rlimit" in text:
        return EngineError(problem(
            "backend_options.memlock", f"the engine may not raise the container's locked-memory limit: {text[-160:]}",
            f"pass backend_options={{'memlock': {resource.getrlimit(resource.RLIMIT_MEMLOCK)[1]}}} (this host's hard "
            "limit), or run dockerd with permission to raise RLIMIT_MEMLOCK", code="RLIMIT_DENIED"),
            headline="the engine refused the launch; nothing is running")
    return EngineError(problem("backend", f"Docker refused the launch: {text[:300]}",
                              "read the message; fix mounts/user/image and retry"),
                      headline="the engine refused the launch; nothing is running")
