"""Pure renderers for cluster launches: the sbatch script (Slurm) and the manifests (Kubernetes).

Nothing here talks to a scheduler; a backend prints, stores and submits what these render.
"""

from tools.cluster.distenv import RESERVED_ENV, dist_env_names

__all__ = ["RESERVED_ENV", "dist_env_names"]
