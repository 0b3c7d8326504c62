"""The Slurm backend: one job on `num_nodes` nodes, one task per node, the container started by a pluggable
runtime (pyxis, Apptainer, or `docker run` inside the job). The plan's `script` IS the sbatch script.

State comes from `scontrol show job -o`, then `sacct` (`-c` when the cluster keeps only the completion log),
then the job's own end record (written by the batch script). The verdict is decided by the engine from the
same evidence as on Docker: rank 0's status.json (only global rank 0 writes one), the footer, the artifacts.
Datasets and results must be on a filesystem every node sees under the same path.
"""

import fcntl
import json
import os
import re
import stat
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationError

from tao_bevfusion.backends.base import Backend, BackendOptions, BackendStatus, Capabilities, Check, LaunchRequest, Plan
from tao_bevfusion.backends.distenv import DEFAULT_MASTER_PORT
from tao_bevfusion.backends.environment import job_env
from tao_bevfusion.backends.slurm import cli
from tao_bevfusion.backends.slurm.script import SLURM_LIST, SLURM_WORD, GpuFlag, Mount, Runtime, SlurmJob, render
from tao_bevfusion.core import layout
from tao_bevfusion.core.errors import InputError, problem
from tao_bevfusion.core.paths import host_path, refuse_in_state_dir
from tao_bevfusion.core.settings import Settings

NODE_FILE = re.compile(r"-node(\d+)\.log\Z")


class SlurmOptions(BackendOptions):
    partition: str | None = Field(default=None, pattern=SLURM_LIST, description="Partition (default: the cluster's).")
    account: str | None = Field(default=None, pattern=SLURM_WORD, description="Account to charge.")
    qos: str | None = Field(default=None, pattern=SLURM_WORD, description="Quality of service.")
    reservation: str | None = Field(default=None, pattern=SLURM_WORD, description="Reservation name.")
    gpu_flag: Literal["gres", "gpus-per-node"] = Field(default="gres", description=(
        "How GPUs per node are asked: --gres=gpu:N (every Slurm) or --gpus-per-node=N."))
    cpus_per_task: int | None = Field(default=None, ge=1, le=1024, description="CPUs per node (one task per node).")
    mem: str | None = Field(default=None, pattern=r"^[0-9]+[KMGT]?$", description="Memory per node, e.g. 200G.")
    time_limit: str | None = Field(default=None, pattern=r"^[0-9]+(-[0-9]{1,2})?(:[0-9]{2}){0,2}$",
                                   description="Wall-time limit (minutes, or [D-]HH:MM:SS).")
    runtime: Literal["pyxis", "apptainer", "docker"] = Field(default="pyxis", description=(
        "How each node starts the container: pyxis (srun --container-image), apptainer, or docker run."))
    log_dir: str | None = Field(default=None, pattern=r"^/[A-Za-z0-9_./+-]*$", description=(
        "Shared folder for the sbatch script and the per-node logs (default: the job's folder)."))
    master_port: int = Field(default=DEFAULT_MASTER_PORT, ge=1024, le=65535, description="Rendezvous port on node 0.")
    shm_size: str = Field(default="16g", pattern=r"^[0-9]+[bkmg]?$", description="docker runtime: /dev/shm size.")
    container_gpus: bool = Field(default=True, description=(
        "docker runtime: pass the allocated GPUs to the container; false for CPU-only test images."))

    @classmethod
    def from_user(cls, raw: dict[str, Any], settings: Settings) -> "SlurmOptions":
        """Site settings may come from TAO_BEVFUSION_SLURM_* so the server is pointed at a cluster once."""
        opts = cls.model_validate({**settings.backend_defaults.get("slurm", {}), **raw})
        if opts.log_dir:  # the sbatch script (env values) and the end record go there: only inside the roots
            field = "backend_options.log_dir"
            confined = refuse_in_state_dir(host_path(opts.log_dir, field, settings, must_exist=False), field,
                                           settings)
            opts = opts.model_copy(update={"log_dir": str(confined)})
        return opts


class SlurmPlan(Plan):
    script: str = Field(description="The exact sbatch script submitted (`sbatch --parsable <script_path>`).")
    script_path: str
    job_name: str
    log_dir: str
    end_record: str
    num_nodes: int
    gpus_per_node: int
    partition: str | None
    runtime: str


def _handle(slurm_id: str, job_name: str, log_dir: str) -> str:
    return f"slurm:{slurm_id}:{job_name}:{log_dir}"


def _parse(handle: str) -> tuple[str, str, Path]:
    _, slurm_id, job_name, log_dir = handle.split(":", 3)
    return slurm_id, job_name, Path(log_dir)


class SlurmBackend(Backend):
    name = "slurm"
    capabilities: ClassVar[Capabilities] = Capabilities(
        maps_paths_into_container=True, multi_node=True, gpu_pinning=False, reattach_by_job_id=True, queues=True)
    options_model = SlurmOptions
    plan_model = SlurmPlan

    def plan(self, request: LaunchRequest) -> SlurmPlan:
        req = request
        opts = SlurmOptions.model_validate(req.options)
        job_name = layout.job_name(req.job_id)
        # A shared log folder gets one private subfolder per job: no job reads or removes another's files.
        log_dir = f"{opts.log_dir.rstrip('/')}/{job_name}" if opts.log_dir else str(Path(req.log_path).parent / "slurm")
        if req.attempt > 1:  # an infrastructure retry: a fresh folder of its own (submit refuses a used one)
            log_dir = f"{log_dir}-attempt{req.attempt}"
        gpus = 0 if req.gpus == [] else req.gpus_per_node
        env = job_env(req.home_dir, req.cache_dir, req.env)
        command = ["bevfusion", req.subtask, "-e", req.spec_container_path]
        end_record = f"{log_dir}/end.json"
        try:
            job = SlurmJob(
                job_id=req.job_id, job_name=job_name,
                num_nodes=req.num_nodes, gpus_per_node=gpus, gpu_flag=GpuFlag(opts.gpu_flag),
                cpus_per_task=opts.cpus_per_task, mem=opts.mem, time_limit=opts.time_limit or _minutes(req),
                partition=opts.partition, account=opts.account, qos=opts.qos, reservation=opts.reservation,
                log_dir=log_dir, runtime=Runtime(opts.runtime), image=req.image, env=env, command=command,
                mounts=[Mount(host=m.host, container=m.container, read_only=m.mode == "ro") for m in req.mounts],
                master_port=opts.master_port, workdir=req.results_container_dir, shm_size=opts.shm_size,
                user=f"{os.getuid()}:{os.getgid()}" if opts.runtime == "docker" else None,
                end_record=end_record, container_gpus=opts.container_gpus)
        except ValidationError as exc:
            raise InputError([problem(f"backend_options.{'.'.join(map(str, e['loc']))}", e["msg"],
                                      "fix the value (it lands in the sbatch script)") for e in exc.errors()],
                             headline="cannot render the sbatch script") from exc
        script_path = f"{log_dir}/{job_name}.sbatch"
        notes = [f"{req.num_nodes} node(s) x {gpus} GPU(s), runtime {opts.runtime}; per-node logs in {log_dir}",
                 "shared filesystem assumed: data, results and spec paths must be the same on every node"]
        return SlurmPlan(backend=self.name, job_id=req.job_id, command=command,
                         equivalent_cli=["sbatch", "--parsable", script_path], mounts=req.mounts, env=env,
                         devices=req.gpus, notes=notes, script=render(job), script_path=script_path,
                         job_name=job_name, log_dir=log_dir, end_record=end_record, num_nodes=req.num_nodes,
                         gpus_per_node=gpus, partition=opts.partition, runtime=opts.runtime)

    def preflight(self, plan: Plan) -> list[Check]:
        assert isinstance(plan, SlurmPlan)
        from tao_bevfusion.backends.slurm.checks import preflight

        return preflight(plan)

    def submit(self, plan: Plan) -> str:
        assert isinstance(plan, SlurmPlan)
        _private_log_dir(Path(plan.log_dir))
        _write_private(Path(plan.script_path), plan.script)
        try:
            out = cli.run(["sbatch", "--parsable", plan.script_path], timeout=60)
        except cli.SlurmCommandError as exc:
            raise InputError(problem("backend", f"sbatch refused the job: {exc.stderr[:400] or exc}",
                                     _submit_fix(exc.stderr), code="SUBMIT_REFUSED"),
                             headline="Slurm refused the job; nothing is queued") from exc
        slurm_id = out.strip().split(";")[0]
        if not slurm_id.isdigit():
            raise InputError(problem("backend", f"sbatch printed no job id: {out.strip()[:200]!r}",
                                     "check the sbatch on PATH (it must support --parsable)"))
        return _handle(slurm_id, plan.job_name, plan.log_dir)

    def poll(self, handle: str) -> BackendStatus:
        slurm_id, _, log_dir = _parse(handle)
        try:
            state = (cli.scontrol_job(slurm_id) or cli.sacct_job(slurm_id)
                     or _end_record(log_dir / "end.json", slurm_id))
        except cli.SlurmCommandError as exc:
            raise cli.engine_error(exc) from exc
        if state is None:
            return BackendStatus(state="missing", error="Slurm no longer knows the job and it left no end record")
        if state.state in cli.QUEUED:
            return BackendStatus(state="queued", error=_waiting(state))
        if state.state in cli.ACTIVE:
            return BackendStatus(state="running")
        code = state.exit_code
        if state.state != "COMPLETED" and not code:
            code = 143 if state.state in ("CANCELLED", "TIMEOUT", "PREEMPTED", "DEADLINE") else 1
        return BackendStatus(state="exited", exit_code=code, oom_killed=state.state == "OUT_OF_MEMORY",
                             error=None if state.state == "COMPLETED" else f"Slurm {state.state} ({state.source})")

    def sync_logs(self, handle: str, log_path: Path) -> None:
        """Append the complete lines the nodes wrote since the last sync: node 0's as they are, then the
        others' and the batch script's own, each prefixed with where it came from ([node N], [batch]). Each
        source's lines keep their order; sources interleave per sync, not by time (the log starts with node
        1's lines when node 1 printed a whole line before node 0 did)."""
        slurm_id, job_name, log_dir = _parse(handle)
        prefix = f"{job_name}-{slurm_id}"
        nodes = sorted(((int(m.group(1)), p) for p in log_dir.glob(f"{prefix}-node*.log")
                        if (m := NODE_FILE.search(p.name))), key=lambda t: t[0])
        sources = [(p, b"" if n == 0 else f"[node {n}] ".encode()) for n, p in nodes]
        sources.append((log_dir / f"{prefix}.batch.log", b"[batch] "))
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(layout.log_lock(log_path), "w") as lock, open(log_path, "ab") as out:
            fcntl.flock(lock, fcntl.LOCK_EX)
            offsets_file = log_path.with_suffix(".offsets")
            offsets = _read_offsets(offsets_file)
            for path, tag in sources:
                offsets[path.name] = _copy_new(path, offsets.get(path.name, 0), out, tag)
            offsets_file.write_text(json.dumps(offsets))

    def cancel(self, handle: str, force: bool) -> None:
        slurm_id, _, _ = _parse(handle)
        # TERM reaches the batch script and every step; their traps remove the containers. KillWait later
        # Slurm sends KILL itself, so `force` asks for the same: a KILL now would skip the traps.
        try:
            cli.run(["scancel", "--quiet", slurm_id])
        except cli.SlurmCommandError as exc:
            raise cli.engine_error(exc) from exc

    def find(self, job_id: str, plan: dict[str, Any] | None = None) -> str | None:
        name = layout.job_name(job_id)
        try:
            ids = cli.job_by_name(name)
            out = cli.stdout_path(ids[0]) if ids else None
        except cli.SlurmCommandError:
            return None
        return _handle(ids[0], name, str(Path(out).parent)) if ids and out else None


WAIT_REASONS = {"PartitionTimeLimit": "its time limit is above the partition's MaxTime: lower time_limit or "
                                      "max_hours, or use another partition",
                "Resources": "the nodes/GPUs it asks for are busy", "Priority": "jobs of higher priority go first",
                "QOSMaxJobsPerUserLimit": "your QOS allows no more running jobs", "ReqNodeNotAvail": "the nodes "
                "it needs are down or drained", "PartitionDown": "the partition is down",
                "PartitionConfig": "it asks for more than the partition allows (time, nodes or GPUs)"}


def _waiting(state: cli.JobState) -> str | None:
    """Why Slurm keeps the job pending: its reason code, the partition, and what the code means."""
    if not state.reason or state.reason == "None":
        return None
    where = f" in partition {state.partition}" if state.partition else ""
    meaning = WAIT_REASONS.get(state.reason)
    return f"Slurm: pending{where}, reason {state.reason}" + (f" ({meaning})" if meaning else "")


def _minutes(req: LaunchRequest) -> str | None:
    """#SBATCH --time from the run's limit (max_hours / max_gpu_hours), in whole minutes, at least 1."""
    if not req.deadline_seconds:
        return None
    return str(max(1, -(-req.deadline_seconds // 60)))


def _submit_fix(stderr: str) -> str:
    text = stderr.lower()
    if "partition" in text:
        return "pass backend_options={'partition': ...} with a partition `sinfo -s` lists"
    if "account" in text or "association" in text:
        return "pass backend_options={'account': ...} with an account you may charge (`sacctmgr show assoc user=$USER`)"
    if "gres" in text or "gpu" in text:
        return "ask for no more GPUs per node than the partition's nodes have (`sinfo -o '%P %G'`)"
    if "node count" in text or "nodes" in text:
        return "lower num_nodes to what the partition has (`sinfo -p <partition>`)"
    return "read Slurm's message; fix the backend_options (partition, account, qos, time_limit) and retry"


def _private_log_dir(path: Path) -> None:
    """Create the job's log folder fresh (0700); one that exists already is someone else's: refused."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError as exc:
        if path.is_symlink() or not path.is_dir() or any(path.iterdir()):
            raise InputError(problem("backend_options.log_dir", f"{path} exists already and is not an empty folder "
                                     "of this job", "use another log_dir (each job gets its own subfolder)",
                                     code="LOG_DIR_TAKEN")) from exc
    os.chmod(path, 0o700)


def _write_private(path: Path, text: str) -> None:
    """The sbatch script carries env values: 0600, created fresh, never through a link."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def _open_trusted(path: Path) -> int | None:
    """An fd of a file in a log folder only if it is a regular file of this user, reached without a link
    (a shared folder may hold anything anyone put there)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError:
        return None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
        os.close(fd)
        return None
    return fd


def _end_record(path: Path, slurm_id: str | None = None) -> cli.JobState | None:
    fd = _open_trusted(path)
    if fd is None:
        return None
    try:
        with os.fdopen(fd, "rb") as fh:
            data = json.loads(fh.read(4096))
        if slurm_id is not None and str(data.get("job_id")) != slurm_id:
            return None  # another job's record
        return cli.JobState(str(data["state"]), int(data["srun_rc"]), source="end record")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _read_offsets(path: Path) -> dict[str, int]:
    try:
        data = json.loads(path.read_text())
        return {str(k): int(v) for k, v in data.items()} if isinstance(data, dict) else {}
    except (OSError, ValueError, TypeError):
        return {}


def _copy_new(path: Path, offset: int, out: Any, tag: bytes) -> int:
    """Copy complete lines (ending in \\n or a progress record's \\r) after `offset`; return the new offset."""
    fd = _open_trusted(path)
    if fd is None:
        return offset
    try:
        with os.fdopen(fd, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size < offset:
                offset = 0  # the file was replaced
            fh.seek(offset)
            chunk = fh.read(min(size - offset, 8 << 20))
    except OSError:
        return offset
    end = max(chunk.rfind(b"\n"), chunk.rfind(b"\r")) + 1
    if end == 0:
        return offset
    body = chunk[:end]
    if tag:
        body = b"".join(tag + line for line in body.splitlines(keepends=True))
    out.write(body)
    return offset + end
