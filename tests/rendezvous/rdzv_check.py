"""One worker of the rendezvous check: join the gloo group torchrun set up, all_reduce the rank, report.

torchrun gives each worker RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT (here derived from PET_* alone).
Prints one JSON line and, when RDZV_OUT names a directory, writes it to rank<RANK>.json there.
"""

import datetime
import json
import os
import socket
from pathlib import Path

import torch
import torch.distributed as dist


def main() -> None:
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    rank, world = dist.get_rank(), dist.get_world_size()
    value = torch.tensor([float(rank)])
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    result = {
        "rank": rank, "world_size": world, "sum": value.item(), "expected": float(sum(range(world))),
        "node_rank": os.environ.get("GROUP_RANK"), "master": f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}",
        "host": socket.gethostname(), "torch": torch.__version__,
    }
    dist.destroy_process_group()
    line = json.dumps(result, sort_keys=True)
    print(line, flush=True)
    out = os.environ.get("RDZV_OUT")
    if out:
        Path(out, f"rank{rank}.json").write_text(line + "\n")


if __name__ == "__main__":
    main()
