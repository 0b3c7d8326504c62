"""Render a multi-node sbatch script from a typed description (pure: no Slurm needed, golden-tested).

One task per node; `srun --kill-on-bad-exit=1` runs a per-node step (an exported bash function) that
sets the node's rank from `$SLURM_NODEID` and starts the container through a pluggable runtime:
pyxis (`srun --container-*`), Apptainer (`apptainer exec`) or `docker run` (host network, `--init`
plus a TERM trap, so `scancel` also removes the container). Every value from the description reaches
the script through `shlex.quote`; `#SBATCH` lines (which sbatch parses without a shell) take only
values matched against conservative patterns.
"""

import shlex
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tao_bevfusion.backends.distenv import DEFAULT_MASTER_PORT, PET_NAMES, V6_NAMES, check_user_env
from tao_bevfusion.core import layout

# Values that land on #SBATCH lines or in Slurm filename patterns: no quoting happens there.
SLURM_WORD = r"^[A-Za-z0-9_.+-]+$"
SLURM_LIST = r"^[A-Za-z0-9_.+,-]+$"
SAFE_DIR = r"^/[A-Za-z0-9_./+-]*$"
JOB_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"  # also a docker container name prefix
STEP_FN = "tao_node_step"
RANK_VARS = ("PET_NODE_RANK", "NODE_RANK")


class GpuFlag(StrEnum):
    GRES = "gres"  # --gres=gpu:N (every Slurm version)
    GPUS_PER_NODE = "gpus-per-node"  # --gpus-per-node=N (cons_tres, newer sites)


class Runtime(StrEnum):
    PYXIS = "pyxis"
    APPTAINER = "apptainer"
    DOCKER = "docker"


class Mount(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    host: str = Field(description="Absolute path on every node (shared filesystem).")
    container: str = Field(description="Absolute path inside the container.")
    read_only: bool = False

    @field_validator("host", "container")
    @classmethod
    def _path(cls, v: str) -> str:
        # ':' and ',' separate fields in docker -v, --bind and --container-mounts; they cannot be escaped there.
        if not v.startswith("/") or any(c in v for c in ":,\n\r\x00"):
            raise ValueError(f"mount path {v!r} must be absolute and contain no ':' ',' or newline")
        return v

    def spec(self) -> str:
        return f"{self.host}:{self.container}" + (":ro" if self.read_only else "")


class SlurmJob(BaseModel):
    """Everything the sbatch script depends on. Site options have no defaults: unset means not rendered."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    job_id: Annotated[
        str | None,
        Field(
            default=None,
            pattern=r"^[A-Za-z0-9_-]{1,64}$",
            description=(
                "The plugin's job id: the value of the container's job label, as on docker (default: the job name "
                "without its tao- prefix)."
            ),
        ),
    ]
    job_name: Annotated[str, Field(pattern=JOB_NAME)]
    num_nodes: Annotated[int, Field(ge=1, le=512)]
    gpus_per_node: Annotated[int, Field(ge=0, le=16)]
    gpu_flag: GpuFlag = GpuFlag.GRES
    cpus_per_task: Annotated[int, Field(ge=1, le=1024)] | None = None
    mem: Annotated[str, Field(pattern=r"^[0-9]+[KMGT]?$")] | None = None
    time_limit: Annotated[str, Field(pattern=r"^[0-9]+(-[0-9]{1,2})?(:[0-9]{2}){0,2}$")] | None = (
        None
    )
    partition: Annotated[str, Field(pattern=SLURM_LIST)] | None = None
    account: Annotated[str, Field(pattern=SLURM_WORD)] | None = None
    qos: Annotated[str, Field(pattern=SLURM_WORD)] | None = None
    reservation: Annotated[str, Field(pattern=SLURM_WORD)] | None = None
    log_dir: Annotated[str, Field(pattern=SAFE_DIR, description="Shared directory for the logs.")]
    node_log: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.%+-]*%n[A-Za-z0-9_.%+-]*$")] = (
        "%x-%j-node%n.log"
    )
    batch_log: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.%+-]+$")] = "%x-%j.batch.log"
    runtime: Runtime
    image: Annotated[str, Field(min_length=1)]
    mounts: list[Mount] = []
    env: dict[str, str] = {}
    command: Annotated[list[str], Field(min_length=1)]
    master_port: Annotated[int, Field(ge=1024, le=65535)] = DEFAULT_MASTER_PORT
    workdir: str | None = None
    shm_size: Annotated[str, Field(pattern=r"^[0-9]+[bkmg]?$")] = "1g"
    user: Annotated[str, Field(pattern=r"^[0-9]+(:[0-9]+)?$")] | None = None
    end_record: str | None = Field(
        default=None, description="File the batch step writes its end state to."
    )
    container_gpus: bool = Field(
        default=True,
        description=(
            "docker runtime: give the container the allocated GPUs (--gpus); false for CPU-only images."
        ),
    )

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        return check_user_env(v)


def _sbatch_lines(job: SlurmJob) -> list[str]:
    opts = [f"--job-name={job.job_name}", f"--nodes={job.num_nodes}", "--ntasks-per-node=1"]
    if job.gpus_per_node:
        opts.append(
            f"--gres=gpu:{job.gpus_per_node}"
            if job.gpu_flag is GpuFlag.GRES
            else f"--gpus-per-node={job.gpus_per_node}"
        )
    named = (
        ("cpus-per-task", job.cpus_per_task),
        ("mem", job.mem),
        ("time", job.time_limit),
        ("partition", job.partition),
        ("account", job.account),
        ("qos", job.qos),
        ("reservation", job.reservation),
    )
    opts += [f"--{flag}={value}" for flag, value in named if value is not None]
    opts.append(f"--output={job.log_dir.rstrip('/')}/{job.batch_log}")
    return [f"#SBATCH {o}" for o in opts]


def _dist_exports(job: SlurmJob) -> list[str]:
    port, n = job.master_port, job.num_nodes
    return [
        "# Node 0 by the address Slurm knows for it (NodeAddr): a node *name* may not resolve from every node.",
        'TAO_FIRST_NODE=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        "TAO_MASTER_ADDR=$(scontrol show node \"$TAO_FIRST_NODE\" -o | grep -o 'NodeAddr=[^ ]*' | cut -d= -f2)",
        'if [ -z "$TAO_MASTER_ADDR" ]; then',
        '  echo "tao: cannot read NodeAddr of $TAO_FIRST_NODE from scontrol" >&2',
        "  exit 1",
        "fi",
        f'export PET_NNODES={n} PET_MASTER_ADDR="$TAO_MASTER_ADDR" PET_MASTER_PORT={port}',
        f'export WORLD_SIZE={n} MASTER_ADDR="$TAO_MASTER_ADDR" MASTER_PORT={port}'
        f" NUM_GPU_PER_NODE={job.gpus_per_node}",
    ]


def _container_env_names(job: SlurmJob) -> list[str]:
    return [*PET_NAMES, *V6_NAMES, *sorted(job.env)]


def _docker_step(job: SlurmJob) -> list[str]:
    # Option and value stay one word so that line wrapping keeps them together.
    argv = [
        "docker run --init --rm",
        '--name "$TAO_CONTAINER"',
        "--network host",
        f"--shm-size={job.shm_size}",
        "--label "
        + shlex.quote(f"{layout.LABEL_JOB}={job.job_id or job.job_name.removeprefix('tao-')}"),
        f'--label {layout.PLUGIN}.slurm-job="$SLURM_JOB_ID"',
        f"--label {layout.LABEL_PLUGIN}={layout.PLUGIN}",
    ]
    if job.gpus_per_node and job.container_gpus:
        argv.append('--gpus "\\"device=${SLURM_STEP_GPUS:-$SLURM_JOB_GPUS}\\""')
    if job.user:
        argv.append(f"--user {job.user}")
    if job.workdir:
        argv.append(f"--workdir {shlex.quote(job.workdir)}")
    # Names only: docker copies each value from this shell, so no value appears on a command line.
    argv += [f"-e {name}" for name in _container_env_names(job)]
    argv += [f"-v {shlex.quote(m.spec())}" for m in job.mounts]
    argv += [shlex.quote(job.image), shlex.join(job.command)]
    return [
        f'  TAO_CONTAINER={shlex.quote(job.job_name)}-"$SLURM_JOB_ID"-node"$SLURM_NODEID"',
        "  # scancel signals the docker CLI, not the container (it belongs to the engine): remove it here.",
        '  trap \'docker rm -f "$TAO_CONTAINER" >/dev/null 2>&1;'
        ' echo "tao: node $SLURM_NODEID terminated (scancel, or another node failed)" >&2; exit 143\' TERM INT',
        "  " + " \\\n    ".join(_wrap(argv)) + " &",
        '  wait "$!"',
        "  # srun reports the highest task exit code, and the nodes it killed exit 143: keep each node's own here.",
        '  TAO_NODE_RC="$?"',
        '  echo "tao: node $SLURM_NODEID exited $TAO_NODE_RC" >&2',
        '  return "$TAO_NODE_RC"',
    ]


def _apptainer_step(job: SlurmJob) -> list[str]:
    argv = ["apptainer exec"]
    if job.gpus_per_node:
        argv.append("--nv")
    if job.workdir:
        argv.append(f"--pwd {shlex.quote(job.workdir)}")
    argv += [f"--bind {shlex.quote(m.spec())}" for m in job.mounts]
    argv += [shlex.quote(job.image), shlex.join(job.command)]
    names = " ".join(_container_env_names(job))
    return [
        "  # APPTAINERENV_* wins over the image's own environment.",
        f'  for tao_v in {names}; do export "APPTAINERENV_$tao_v=${{!tao_v}}"; done',
        "  exec " + " \\\n    ".join(_wrap(argv)),
    ]


def pyxis_image(image: str) -> str:
    """pyxis/enroot name a registry as `registry#image` (nvcr.io#nvidia/tao/...); Docker Hub names stay as they
    are. A reference already in that form is kept."""
    first, sep, rest = image.partition("/")
    if "#" in image or not sep or not ("." in first or ":" in first or first == "localhost"):
        return image
    return f"{first}#{rest}"


def _pyxis_srun_opts(job: SlurmJob) -> list[str]:
    opts = [
        f"--container-image={shlex.quote(pyxis_image(job.image))}",
        # Forces these over the image's values (pyxis lets the image's env win otherwise).
        # The rank variables are set inside the container by the step function, after the image's env.
        "--container-env=" + ",".join(n for n in _container_env_names(job) if n not in RANK_VARS),
    ]
    if job.mounts:
        opts.append("--container-mounts=" + shlex.quote(",".join(m.spec() for m in job.mounts)))
    if job.workdir:
        opts.append(f"--container-workdir={shlex.quote(job.workdir)}")
    return opts


def _wrap(argv: list[str], width: int = 100) -> list[str]:
    """Group already-quoted words into lines of about `width` characters, never splitting a word."""
    lines: list[str] = []
    for word in argv:
        if lines and len(lines[-1]) + len(word) < width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def _step_function(job: SlurmJob) -> list[str]:
    body = {Runtime.DOCKER: _docker_step, Runtime.APPTAINER: _apptainer_step}.get(job.runtime)
    lines = [
        f"{STEP_FN}() {{",
        "  # Per node: srun sets SLURM_NODEID in each task (0 on the first node of the allocation).",
        '  export PET_NODE_RANK="$SLURM_NODEID" NODE_RANK="$SLURM_NODEID"',
    ]
    lines += body(job) if body else ["  exec " + shlex.join(job.command)]
    return [*lines, "}", f"export -f {STEP_FN}"]


def _record_function(job: SlurmJob) -> list[str]:
    """`tao_record STATE RC`: the job's own end record, read when scontrol and sacct no longer know the job."""
    if job.end_record is None:
        return ["tao_record() { :; }"]
    fmt = '{"job_id": "%s", "state": "%s", "srun_rc": %s, "end": %s}\\n'
    return [
        "tao_record() {",
        f'  printf \'{fmt}\' "$SLURM_JOB_ID" "$1" "$2" "$(date +%s)" > {shlex.quote(job.end_record)}',
        "}",
    ]


def _launch(job: SlurmJob) -> list[str]:
    srun = [
        "srun",
        "--export=ALL",
        "--kill-on-bad-exit=1",
        f"--nodes={job.num_nodes}",
        f"--ntasks={job.num_nodes}",
        "--ntasks-per-node=1",
        f"--output={job.log_dir.rstrip('/')}/{job.node_log}",
    ]
    if job.runtime is Runtime.PYXIS:
        srun += _pyxis_srun_opts(job)
    srun.append(f"bash -c {STEP_FN}")
    return [
        " \\\n  ".join(_wrap(srun)) + " &",
        'TAO_SRUN="$!"',
        "# scancel: pass TERM on to the step and record the cancellation before the job ends.",
        'trap \'kill -TERM "$TAO_SRUN" 2>/dev/null; wait "$TAO_SRUN"; tao_record CANCELLED 143; exit 143\' TERM',
        'wait "$TAO_SRUN"',
        'TAO_RC="$?"',
        'if [ "$TAO_RC" -eq 0 ]; then TAO_STATE=COMPLETED; else TAO_STATE=FAILED; fi',
        'tao_record "$TAO_STATE" "$TAO_RC"',
        'exit "$TAO_RC"',
    ]


def render(job: SlurmJob) -> str:
    """The sbatch script text for `job`: submit it with `sbatch --parsable <file>`."""
    head = [
        "#!/bin/bash",
        f"# tao-bevfusion: {job.num_nodes} node(s) x {job.gpus_per_node} GPU(s), runtime {job.runtime.value}",
        *_sbatch_lines(job),
        "set -uo pipefail",
        "",
    ]
    env = [f"export {name}={shlex.quote(value)}" for name, value in sorted(job.env.items())]
    return (
        "\n".join(
            [
                *head,
                *_dist_exports(job),
                *env,
                "",
                *_step_function(job),
                *_record_function(job),
                "",
                *_launch(job),
            ]
        )
        + "\n"
    )
