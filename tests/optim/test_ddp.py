"""DDP (gloo, 2 CPU processes) against single-process training (METHODS §8.5)."""

from __future__ import annotations

import socket
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from segbalance.optim import SAM, sam_step

from ._ddp_worker import BATCH, STEPS, run
from ._helpers import make_batch, make_mlp, mse

pytestmark = pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo"
)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _single_process(mode: str) -> list[torch.Tensor]:
    model = make_mlp(seed=21)
    opt = SAM(model.parameters(), torch.optim.AdamW, lr=0.01, weight_decay=0.01)
    for t in range(STEPS):
        x, y = make_batch(400 + t, BATCH)
        if mode == "global":  # one batch of all 8 samples
            micro = [(x, y)]
        else:  # the 4 micro-batches of both ranks, each perturbed on its own
            micro = [(x[i : i + 2], y[i : i + 2]) for i in range(0, BATCH, 2)]
        sam_step(model, opt, mse, micro, sam_perturbation=mode)
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.slow
def test_ddp_matches_single_process(tmp_path) -> None:
    start = time.perf_counter()
    mp.start_processes(run, args=(2, _free_port(), str(tmp_path)), nprocs=2, start_method="spawn")
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for mode in ("global", "local"):
        for p0, p1 in zip(ranks[0][mode]["params"], ranks[1][mode]["params"], strict=True):
            assert torch.equal(p0, p1), f"{mode}: replicas differ"
        expected = _single_process(mode)
        for p, q in zip(ranks[0][mode]["params"], expected, strict=True):
            torch.testing.assert_close(
                p, q, rtol=1e-10, atol=1e-12, msg=f"{mode} differs from 1 process"
            )
    # the local mode really is different from the global one (m-sharpness)
    assert not all(
        torch.allclose(a, b, rtol=1e-8, atol=0)
        for a, b in zip(ranks[0]["global"]["params"], ranks[0]["local"]["params"], strict=True)
    )
    print(f"ddp test took {time.perf_counter() - start:.1f} s")
