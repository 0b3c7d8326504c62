"""The one GPU inventory of this host: nvidia-smi's index and memory of each GPU.

It describes the machine the server runs on: the docker and local backends launch here; a cluster
backend's GPUs are its nodes', never these.
"""

import shutil
import subprocess


def host_gpus() -> list[tuple[str, int]] | None:
    """(host index, MiB) per GPU, or None when nvidia-smi is absent or does not answer."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=index,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return None
    gpus = []
    for line in out.splitlines():
        idx, _, mem = line.partition(",")
        if idx.strip().isdigit():
            gpus.append((idx.strip(), int(float(mem.strip() or 0))))
    return gpus


def host_gpu_ids() -> list[str]:
    """Host GPU indices (none when nvidia-smi is absent)."""
    return [idx for idx, _ in host_gpus() or []]
