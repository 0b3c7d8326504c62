"""Preflight of a Slurm launch: the scheduler answers, the partition exists and offers the nodes and GPUs
per node asked, host GPU pinning is not asked, the paths exist (and must be shared: a warning)."""

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from tao_bevfusion.backends.base import Check
from tao_bevfusion.backends.slurm import cli

if TYPE_CHECKING:
    from tao_bevfusion.backends.slurm.backend import SlurmPlan


def _partition_checks(plan: "SlurmPlan") -> list[Check]:
    try:
        parts = cli.partitions()
    except cli.SlurmCommandError as exc:
        return [Check(name="scheduler", ok=False, message=f"Slurm does not answer: {exc}",
                      fix="install the Slurm client (sbatch, sinfo, scontrol) on this host, point SLURM_CONF at the "
                      "cluster's slurm.conf, and check `sinfo` works")]
    checks = [Check(name="scheduler", ok=True, severity="info", message=f"sinfo lists {len(parts)} partition(s)")]
    names = sorted(p.name for p in parts)
    wanted = plan.partition.split(",")[0] if plan.partition else None
    part = next((p for p in parts if (p.name == wanted if wanted else p.default)), None)
    if part is None:
        what = f"partition {wanted!r} does not exist" if wanted else "the cluster has no default partition"
        return [*checks, Check(name="partition", ok=False, message=what,
                               fix=f"pass backend_options={{'partition': one of {names}}}")]
    if not part.available:
        checks.append(Check(name="partition", ok=False, message=f"partition {part.name} is not up",
                            fix=f"use another partition ({names}) or ask the admins"))
    if part.nodes < plan.num_nodes:
        checks.append(Check(name="nodes", ok=False, message=f"{plan.num_nodes} nodes asked; partition {part.name} "
                            f"has {part.nodes}", fix=f"set num_nodes <= {part.nodes} or choose another partition"))
    if plan.gpus_per_node > part.gpus_per_node:
        checks.append(Check(name="gpus_per_node", ok=False, message=f"{plan.gpus_per_node} GPUs per node asked; "
                            f"nodes of partition {part.name} offer at most {part.gpus_per_node}",
                            fix=f"set num_gpus <= {part.gpus_per_node} (and more nodes), or choose a GPU partition"))
    else:
        checks.append(Check(name="partition", ok=True, severity="info", message=(
            f"partition {part.name}: {part.nodes} node(s), up to {part.gpus_per_node} GPU(s) per node")))
    return checks


def preflight(plan: "SlurmPlan") -> list[Check]:
    if shutil.which("sbatch") is None:
        return [Check(name="sbatch", ok=False, message="`sbatch` is not on PATH",
                      fix="install the Slurm client on the host the server runs on (Debian: slurm-client)")]
    checks = _partition_checks(plan)
    if plan.devices:
        checks.append(Check(name="gpus", ok=False, message=f"host GPU ids {plan.devices} asked; Slurm chooses "
                            "the GPUs of each node", fix="leave gpus unset and set num_gpus (GPUs per node)"))
    # Writable mounts (results, scratch) are created by the launch; inputs must exist already.
    missing = [m.host for m in plan.mounts if m.mode == "ro" and not Path(m.host).exists()]
    if missing:
        checks.append(Check(name="paths", ok=False, message=f"paths do not exist on the submit host: {missing[:5]}",
                            fix="create them on the shared filesystem the nodes mount"))
    checks.append(Check(name="shared_fs", ok=True, severity="warning", message=(
        "shared filesystem assumed: " + ", ".join(sorted({m.host for m in plan.mounts})[:6]) +
        f" and {plan.log_dir} must exist under the same paths on every node"),
        fix="keep datasets, results and the state dir (TAO_BEVFUSION_HOME) on a filesystem all nodes mount"))
    if plan.runtime == "docker":
        checks.append(Check(name="runtime", ok=True, severity="info", message=(
            "docker runtime: every node needs a Docker engine the job's user may use; containers use the host "
            "network so the nodes reach node 0")))
    return checks
