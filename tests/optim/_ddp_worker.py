"""Worker for the 2-process gloo DDP test (spawned; module-level so it can be pickled)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from segbalance.optim import SAM, sam_step

from ._helpers import make_batch, make_mlp, mse

STEPS = 2
BATCH = 8


def rank_micro_batches(step: int, rank: int, world: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """This rank's share of the global batch of step ``step``, as 2 micro-batches."""
    x, y = make_batch(400 + step, BATCH)
    share = BATCH // world
    xs, ys = x[rank * share : (rank + 1) * share], y[rank * share : (rank + 1) * share]
    half = share // 2
    return [(xs[:half], ys[:half]), (xs[half:], ys[half:])]


def run(rank: int, world: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        results = {}
        for mode in ("global", "local"):
            model = make_mlp(seed=21)
            ddp = DistributedDataParallel(model)
            opt = SAM(ddp.parameters(), torch.optim.AdamW, lr=0.01, weight_decay=0.01)
            losses = [
                sam_step(ddp, opt, mse, rank_micro_batches(t, rank, world), sam_perturbation=mode)
                for t in range(STEPS)
            ]
            results[mode] = {
                "params": [p.detach().clone() for p in model.parameters()],
                "losses": losses,
            }
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()
