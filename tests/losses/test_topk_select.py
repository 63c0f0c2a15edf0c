"""Exact top-k selection masks (bracketed k-th value) against a stable argsort."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from segbalance.losses.topk import sample_stride, top_k_indices, top_k_mask, top_k_row_mask


def _argsort_mask(values: np.ndarray, k: int) -> np.ndarray:
    """The k largest, ties broken by the lowest index (stable sort of -values)."""
    mask = np.zeros(values.size, dtype=bool)
    mask[np.argsort(-values, kind="stable")[:k]] = True
    return mask


@pytest.mark.parametrize("n", [1, 7, 1000, 70_001, 1_100_000])
@pytest.mark.parametrize("frac", [0.001, 0.1, 0.5, 0.97])
def test_mask_is_the_exact_top_k(n: int, frac: float) -> None:
    """Rows long enough to use the sampled bracket (n >= 4 * 2^15) and short rows."""
    rng = np.random.default_rng(n + int(frac * 1000))
    values = rng.exponential(1.0, n).astype(np.float32)
    k = max(1, int(frac * n))
    got = top_k_row_mask(torch.from_numpy(values), k).numpy()
    np.testing.assert_array_equal(got, _argsort_mask(values, k))
    idx = top_k_indices(torch.from_numpy(values), k).numpy()
    np.testing.assert_array_equal(idx, np.flatnonzero(_argsort_mask(values, k)))


@pytest.mark.parametrize("n", [50, 300_000])
def test_ties_keep_exactly_k_lowest_indices(n: int) -> None:
    rng = np.random.default_rng(3)
    values = rng.integers(0, 5, n).astype(np.float64)  # massive ties at every threshold
    for k in (1, n // 10, n // 2, n - 1):
        got = top_k_row_mask(torch.from_numpy(values), k).numpy()
        assert got.sum() == k
        np.testing.assert_array_equal(got, _argsort_mask(values, k))


def test_excluded_entries_and_skewed_distribution() -> None:
    """-inf entries are never chosen; a heavy tail (CE of a trained net) still brackets."""
    rng = np.random.default_rng(5)
    values = np.where(
        rng.random(400_000) < 0.99, rng.exponential(1e-4, 400_000), 5.0 + rng.random(400_000)
    )
    values[::7] = -np.inf
    n_valid = int(np.isfinite(values).sum())
    for k in (10, n_valid // 10, n_valid):
        got = top_k_row_mask(torch.from_numpy(values), k).numpy()
        np.testing.assert_array_equal(got, _argsort_mask(values, k))
        assert np.isfinite(values[got]).all()


def test_rows_and_nan() -> None:
    values = torch.tensor([[3.0, 1.0, 2.0, 0.0], [0.5, float("nan"), 0.1, 0.2]])
    mask = top_k_mask(values, [2, 1])
    assert mask.tolist() == [[True, False, True, False], [False, True, False, False]]
    assert top_k_mask(values, [0, 4]).tolist() == [[False] * 4, [True] * 4]


@pytest.mark.parametrize("sampled", ["small", "large"])
def test_a_misleading_sample_falls_back_to_the_exact_answer(sampled: str) -> None:
    """The strided sample sees only every (n // 2^14)-th entry: make those unlike the rest,
    so the bracket is wrong (k or more values above hi, or fewer than k above lo)."""
    n = 1 << 18
    rng = np.random.default_rng(11)
    values = rng.random(n).astype(np.float32) + 10.0
    at_sample = np.zeros(n, dtype=bool)
    at_sample[:: sample_stride(n)] = True
    values[at_sample] = rng.random(int(at_sample.sum())).astype(np.float32) + (
        0.0 if sampled == "small" else 20.0
    )
    for k in (n // 100, n // 10, n // 2):
        idx = top_k_indices(torch.from_numpy(values), k).numpy()
        np.testing.assert_array_equal(idx, np.flatnonzero(_argsort_mask(values, k)))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_rows_select_exactly(dtype: torch.dtype) -> None:
    """Dtypes numpy cannot select in go through torch's kthvalue: same exact answer."""
    rng = np.random.default_rng(17)
    values = torch.from_numpy(rng.exponential(1.0, 300_000)).to(dtype)
    k = 30_000
    idx = top_k_indices(values, k).numpy()
    np.testing.assert_array_equal(idx, np.flatnonzero(_argsort_mask(values.double().numpy(), k)))


def test_the_sample_stride_is_prime_and_does_not_follow_an_image_axis() -> None:
    for n in (70_000, 1 << 18, 1 << 21, 3 * 96**3):
        s = sample_stride(n)
        assert s is not None and s <= n // (1 << 14)
        assert all(s % f for f in range(2, math.isqrt(s) + 1)), s
    assert sample_stride(60_000) is None  # short rows are selected directly
    # a 128^3 volume whose first plane along the last axis differs: a stride of 128 (the
    # row length over the sample size) would sample that plane alone
    vol = np.random.default_rng(3).random((128, 128, 128))
    vol[..., 0] = -40.0
    sample = vol.ravel()[:: sample_stride(vol.size)]
    assert sample.size >= 1 << 14
    assert np.mean(sample == -40.0) < 2 / 128
