"""The distributed variables a cluster launch owns (contract §9.2 and §9.3), shared by both renderers.

TAO 5.5's launcher passes only `--nproc_per_node --nnodes` to torchrun, so node rank, master address
and port arrive as torchrun's `PET_*` fallbacks; the 6.x names are set too for newer tooling
(there WORLD_SIZE is the number of nodes, not of processes).
"""

import re

DEFAULT_MASTER_PORT = 29500  # torchrun's rendezvous port on node 0 unless an option says otherwise
PET_NAMES = ("PET_NODE_RANK", "PET_NNODES", "PET_MASTER_ADDR", "PET_MASTER_PORT")
V6_NAMES = ("WORLD_SIZE", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT", "NUM_GPU_PER_NODE")
# Names a user env may not set: the backend owns them, and torchrun sets the per-worker ones. The one list;
# tools/backends/environment.py refuses the same names (and any PET_*) for every backend.
TORCHRUN_WORKER_NAMES = (
    "RANK",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "ROLE_RANK",
    "NNODES",
    "NPROC_PER_NODE",
)
RESERVED_ENV = frozenset({*PET_NAMES, *V6_NAMES, *TORCHRUN_WORKER_NAMES})
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def dist_env_names() -> tuple[str, ...]:
    """Every distributed variable a node gets, in the order the renderers list them."""
    return (*PET_NAMES, *V6_NAMES)


def check_user_env(env: dict[str, str]) -> dict[str, str]:
    """Refuse env names that are not shell names or that the launch owns (PET_* included)."""
    for name in env:
        if not ENV_NAME.match(name):
            raise ValueError(
                f"env name {name!r} is not a valid variable name ([A-Za-z_][A-Za-z0-9_]*)"
            )
        if name in RESERVED_ENV or name.startswith("PET_"):
            raise ValueError(
                f"env {name!r} is set by the cluster launch itself (node rank, master address); "
                "remove it from env"
            )
    return env
