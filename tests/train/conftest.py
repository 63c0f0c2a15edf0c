"""Fixtures for the training engine: a tiny phantom config and a cache per test session."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

TINY = {
    "data": {
        "dataset": "phantom",
        "phantom": {"n_cases": 4, "shape": [24, 24, 24], "fg_fraction": 0.01, "seed": 0},
        "split": {"folds": 2},
        "patch_size": [16, 16, 16],
        "batch_size": 2,
        "batches_per_epoch": 4,
    },
    "model": {"name": "unet", "kwargs": {"channels": [4, 8], "strides": [2], "num_res_units": 0}},
    "loss": "dice+ce",
    "optimizer": {"lr": 0.01},
    "budget": {"epochs": 2},
    "validation": {"every_epochs": 1},
    "threads": 1,
    "output": "run",
}


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("segbalance_cache")


@pytest.fixture(autouse=True)
def _own_cache(cache_dir, monkeypatch) -> None:
    monkeypatch.setenv("SEGBALANCE_CACHE", str(cache_dir))


def deep_update(base: dict, changes: dict) -> dict:
    out = copy.deepcopy(base)  # never share nested dicts with TINY
    for key, value in changes.items():
        # a model's kwargs belong to one network: replace them instead of merging
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "kwargs":
            out[key] = deep_update(out[key], value)
        else:
            out[key] = value
    return out


@pytest.fixture
def write_config(tmp_path):
    """``write_config(changes) -> path`` of a YAML config: TINY updated with ``changes``."""

    def write(changes: dict | None = None, name: str = "config.yaml") -> Path:
        cfg = deep_update(TINY, {"output": str(tmp_path / "run"), **(changes or {})})
        path = tmp_path / name
        path.write_text(yaml.safe_dump(cfg))
        return path

    return write


def run_cli(
    *args: str, env: dict | None = None, check: bool = False
) -> subprocess.CompletedProcess:
    """``python -m segbalance ARGS`` in a subprocess (same cache as the test)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "segbalance", *args],
        capture_output=True,
        text=True,
        env=full_env,
        check=check,
        timeout=300,
    )
