"""Trainer overhead: steps per second of ``segbalance.train.train`` vs a bare loop.

Both run the same model, loss (dice+ce), AdamW, patch loader batches and thread count in
this process, interleaved, several repeats; the bare loop is the minimum a hand-written
loop must do (batch -> forward -> loss -> backward -> step). Target: trainer >= 0.95x.

    python benchmarks/train_step.py [--steps 60] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from segbalance.config import TrainConfig, validate_config
from segbalance.train import train
from segbalance.train.setup import (
    build_loader,
    build_network,
    build_training_loss,
    prepare_data,
)

CONFIG = {
    "data": {
        "dataset": "phantom",
        "phantom": {"n_cases": 8, "shape": [48, 48, 48], "fg_fraction": 0.002},
        "split": {"folds": 4},
        "patch_size": [32, 32, 32],
        "batch_size": 2,
        "batches_per_epoch": 20,
    },
    "model": {"name": "unet", "kwargs": {"channels": [8, 16, 32], "strides": [2, 2]}},
    "loss": "dice+ce",
    "optimizer": {"lr": 0.001},
    "validation": {"every_epochs": 1_000_000, "final_evaluation": False},
    "threads": 2,
}


def trainer_rate(steps: int, out: Path) -> float:
    cfg = validate_config(
        {**CONFIG, "budget": {"steps": steps}, "output": str(out)}, TrainConfig, "bench"
    )
    result = train(cfg, progress=False)
    return result.step / result.seconds


def bare_rate(steps: int) -> float:
    cfg = validate_config({**CONFIG, "budget": {"steps": steps}, "output": "x"}, TrainConfig, "b")
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    info, data = prepare_data(cfg.data)
    model, _ = build_network(cfg, info)
    loss_fn = build_training_loss(cfg, info)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=cfg.optimizer.weight_decay)
    loader = build_loader(cfg, info, data, batches_per_epoch=steps)
    model.train()
    start = time.perf_counter()
    for inputs, target in loader:
        opt.zero_grad(set_to_none=True)
        loss_fn(model(inputs), target).backward()
        opt.step()
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("SEGBALANCE_CACHE", tempfile.mkdtemp(prefix="sb_bench_"))
    bare_rate(5)  # warm the cache and the allocator
    trainer, bare = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            bare.append(bare_rate(args.steps))
            trainer.append(trainer_rate(args.steps, Path(tmp) / f"run{i}"))
            print(f"repeat {i}: trainer {trainer[-1]:.2f} steps/s, bare {bare[-1]:.2f} steps/s")
    result = {
        "steps": args.steps,
        "repeats": args.repeats,
        "trainer_steps_per_second": statistics.median(trainer),
        "bare_steps_per_second": statistics.median(bare),
        "ratio": statistics.median(trainer) / statistics.median(bare),
        "torch": str(torch.__version__),
        "threads": 2,
    }
    print(json.dumps(result, indent=1))
    out = Path("bench_results")
    out.mkdir(exist_ok=True)
    (out / "train_step.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
