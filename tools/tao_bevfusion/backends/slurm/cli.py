"""Talking to Slurm through its own commands (argv lists; SLURM_CONF and PATH from the environment).

Only the stable one-line text outputs are parsed: `scontrol show job -o`, `sacct -P -n -o ...`, `sinfo -h -o`.
Slurm 22.05's `--json` outputs ignore filters and change shape across versions, so they are not used.
"""

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache

from tao_bevfusion.core.errors import EngineError, problem

TIMEOUT = 30
QUEUED = {
    "PENDING",
    "CONFIGURING",
    "REQUEUED",
    "REQUEUE_HOLD",
    "REQUEUE_FED",
    "RESV_DEL_HOLD",
    "SPECIAL_EXIT",
}
ACTIVE = {"RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT", "RESIZING"}
UNKNOWN_JOB = "Invalid job id specified"
GPU_GRES = re.compile(r"gpu(?::[A-Za-z0-9_.-]+)?:(\d+)")


class SlurmCommandError(Exception):
    def __init__(self, argv: list[str], rc: int, stderr: str) -> None:
        super().__init__(f"{argv[0]} exited {rc}: {stderr.strip()[:400]}")
        self.argv, self.rc, self.stderr = argv, rc, stderr.strip()


def run(argv: list[str], timeout: float = TIMEOUT) -> str:
    """stdout of a Slurm command; SlurmCommandError with the scheduler's own message when it fails."""
    exe = shutil.which(argv[0])
    if exe is None:
        raise SlurmCommandError(argv, 127, f"`{argv[0]}` is not on PATH")
    try:
        out = subprocess.run(
            [exe, *argv[1:]],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=os.environ.copy(),
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise SlurmCommandError(argv, 124, f"no answer within {timeout:.0f} s") from exc
    if out.returncode != 0:
        raise SlurmCommandError(argv, out.returncode, out.stderr or out.stdout)
    return out.stdout


def engine_error(exc: SlurmCommandError) -> EngineError:
    return EngineError(
        problem(
            "backend",
            f"Slurm: {exc}",
            "check that slurmctld answers (`scontrol ping`) "
            "and SLURM_CONF points at the cluster's slurm.conf; then call get_job again",
            code="SCHEDULER_UNREACHABLE",
        )
    )


def key_values(line: str) -> dict[str, str]:
    """`scontrol -o` output as a dict (values never contain spaces except Command=/Comment=, not used here)."""
    return dict(word.partition("=")[::2] for word in line.split() if "=" in word)


@dataclass(frozen=True)
class JobState:
    state: str
    exit_code: int | None
    reason: str = ""
    source: str = "scontrol"
    partition: str = ""


def exit_code(field: str) -> int | None:
    """Slurm's `rc:signal` as one shell-style code (128+signal when a signal ended it)."""
    rc, _, sig = field.partition(":")
    if not rc.isdigit():
        return None
    return 128 + int(sig) if sig.isdigit() and int(sig) else int(rc)


def scontrol_job(slurm_id: str) -> JobState | None:
    """The job as slurmctld knows it; None once it has left the controller (MinJobAge)."""
    try:
        out = run(["scontrol", "show", "job", "-o", slurm_id])
    except SlurmCommandError as exc:
        if UNKNOWN_JOB in exc.stderr:
            return None
        raise
    info = key_values(out.splitlines()[0] if out.strip() else "")
    if not info.get("JobState"):
        return None
    return JobState(
        info["JobState"],
        exit_code(info.get("ExitCode", "")),
        info.get("Reason", ""),
        partition=info.get("Partition", ""),
    )


@lru_cache(maxsize=4)
def _accounting_flag(conf: str) -> tuple[str, ...]:
    """`sacct` reads the accounting database when there is one, else the job completion log (`-c`)."""
    try:
        cfg = run(["scontrol", "show", "config"])
    except SlurmCommandError:
        return ("-c",)
    storage = next(
        (
            line.split("=", 1)[1].strip()
            for line in cfg.splitlines()
            if line.startswith("AccountingStorageType")
        ),
        "",
    )
    return () if storage and not storage.endswith("/none") else ("-c",)


def sacct_job(slurm_id: str) -> JobState | None:
    flag = _accounting_flag(os.environ.get("SLURM_CONF", ""))
    try:
        out = run(["sacct", *flag, "-j", slurm_id, "-P", "-n", "-o", "JobID,State,ExitCode"])
    except SlurmCommandError:
        return None
    for line in out.splitlines():
        job, _, rest = line.partition("|")
        state, _, code = rest.partition("|")
        if job.split(".")[0] == slurm_id and "." not in job and state:
            return JobState(
                state.split()[0], exit_code(code), source="sacct" + (" -c" if flag else "")
            )
    return None


@dataclass(frozen=True)
class Partition:
    name: str
    default: bool
    available: bool
    nodes: int
    gpus_per_node: int


def partitions() -> list[Partition]:
    out = run(["sinfo", "-h", "-o", "%P|%a|%D|%G"])
    found: dict[str, Partition] = {}
    for line in out.splitlines():
        name, avail, nodes, gres = [*line.split("|"), "", "", ""][:4]
        if not name:
            continue
        gpus = max((int(m) for m in GPU_GRES.findall(gres)), default=0)
        key = name.rstrip("*")
        prev = found.get(key)
        count = int(nodes) if nodes.isdigit() else 0
        found[key] = Partition(
            key,
            name.endswith("*"),
            avail == "up",
            count + (prev.nodes if prev else 0),
            max(gpus, prev.gpus_per_node if prev else 0),
        )
    return list(found.values())


def job_by_name(name: str) -> list[str]:
    """Live Slurm job ids with this job name."""
    out = run(["squeue", "-h", "--name", name, "-o", "%i"])
    return [w for w in out.split() if w.isdigit()]


def stdout_path(slurm_id: str) -> str | None:
    out = run(["scontrol", "show", "job", "-o", slurm_id])
    return key_values(out).get("StdOut") or None
