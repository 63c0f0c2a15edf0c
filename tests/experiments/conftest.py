"""Shared by the comparison tests: one dataset cache per test session, the tiny training."""

from __future__ import annotations

from pathlib import Path

import pytest

from segbalance.experiments.demo import demo_config

#: the quick demo's training settings: the smallest network and patches that still train
TINY_TRAIN = demo_config(quick=True).train


def tiny_compare(tmp_path: Path, **changes) -> dict:
    """A one-cell, one-seed, 4-step comparison on a small phantom, updated with ``changes``."""
    raw = {
        "dataset": "phantom",
        "phantom": {"n_cases": 4, "shape": [32, 32, 32], "fg_fraction": 0.01},
        "train": TINY_TRAIN,
        "budget": {"steps": 4},
        "seeds": [0],
        "cells": [{"name": "base", "loss": "dice+ce", "optimizer": "adamw"}],
        "output": str(tmp_path / "cmp"),
        "landscape": False,
    }
    raw.update(changes)
    return raw


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory, monkeypatch) -> None:
    monkeypatch.setenv("SEGBALANCE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
