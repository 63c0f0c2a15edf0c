"""Shared helpers for the loss tests: example E, random cases, torch conversion."""

from __future__ import annotations

import numpy as np
import pytest
import torch

# METHODS §0 reference example E (B=1, C=1, S=2x2x2, C order)
E_LOGITS = np.array([2.0, -1.0, 0.5, -3.0, 1.5, -0.5, -2.0, 0.0]).reshape(1, 1, 2, 2, 2)
E_TARGET = np.array([1, 0, 1, 0, 0, 0, 0, 1]).reshape(1, 2, 2, 2)

IGNORE = 255


def tt(a: np.ndarray, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """numpy -> torch with an explicit dtype (float64 by default for tight comparisons)."""
    return torch.as_tensor(np.ascontiguousarray(a)).to(dtype)


def tl(a: np.ndarray) -> torch.Tensor:
    """Integer labels as int64 torch tensor."""
    return torch.as_tensor(np.ascontiguousarray(a)).long()


def random_case(
    seed: int,
    *,
    n_classes: int = 1,
    batch: int = 2,
    spatial: tuple[int, ...] = (6, 7, 5),
    fg: float = 0.25,
    ignore_index: int | None = None,
    ignore_frac: float = 0.1,
    logit_scale: float = 2.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Continuous random logits (B, C, *S) and integer labels (B, *S) with every class present."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, logit_scale, size=(batch, n_classes, *spatial))
    n_lab = max(2, n_classes)
    probs = np.array([1.0 - fg] + [fg / (n_lab - 1)] * (n_lab - 1))
    t = rng.choice(n_lab, size=(batch, *spatial), p=probs)
    # every class present in every sample, so the reference's smoothing never dominates
    flat = t.reshape(batch, -1)
    for b in range(batch):
        flat[b, :n_lab] = np.arange(n_lab)
        rng.shuffle(flat[b])
    t = flat.reshape(batch, *spatial)
    if ignore_index is not None:
        ign = rng.random(t.shape) < ignore_frac
        ign.reshape(batch, -1)[:, 0] = True  # at least one ignored voxel per sample
        t = np.where(ign, ignore_index, t)
    return z, t


def random_weights(seed: int, t: np.ndarray) -> np.ndarray:
    """Positive voxel weights (B, *S) in [0.5, 3]."""
    return np.random.default_rng(seed + 1000).uniform(0.5, 3.0, size=t.shape)


def value(loss_fn: torch.nn.Module, z: np.ndarray, t: np.ndarray, **kw) -> float:
    """Evaluate a loss on float64 tensors and return a Python float."""
    out = loss_fn(tt(z), tl(t), **kw)
    assert out.ndim == 0
    return float(out)


@pytest.fixture
def example_e() -> tuple[np.ndarray, np.ndarray]:
    return E_LOGITS.copy(), E_TARGET.copy()
