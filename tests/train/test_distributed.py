"""torchrun with 2 CPU processes (gloo): DDP training with SAM, rank 0 alone writes files."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from segbalance.config import load_config
from segbalance.train.setup import build_network, prepare_data


@pytest.mark.slow
def test_torchrun_two_processes_with_sam(write_config, tmp_path) -> None:
    config = write_config(
        {
            "budget": {"steps": 6},
            "data": {"batch_size": 1},
            "optimizer": {"sam": {"variant": "sam"}},
            "validation": {"every_epochs": 1},
        }
    )
    cfg = load_config(config)
    info, _ = prepare_data(cfg.data)
    torch.manual_seed(cfg.seed)
    initial = build_network(cfg, info)[0].state_dict()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "segbalance",
        "train",
        str(config),
        "--quiet",
    ]
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "run"
    state = torch.load(run / "checkpoint_last.pt", weights_only=True)
    assert state["step"] == 6
    # DDP keeps one set of weights: rank 0's checkpoint differs from the shared start
    assert any(not torch.equal(state["model"][k], initial[k]) for k in initial)
    # rank 0 alone printed the final line and wrote one log (no duplicated rows)
    assert result.stdout.count("done: 6 steps") == 1
    steps = [line.split(",")[1] for line in (run / "train_log.csv").read_text().splitlines()[1:]]
    assert steps == ["4", "6"]
    leftovers = [p.name for p in run.iterdir() if p.name.startswith(".") and p.name != ".lock"]
    assert leftovers == []
