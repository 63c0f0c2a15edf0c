"""Load: 200 back-to-back loss and metric calls on random shapes and dtypes, no NaN, no leak.

Hypothesis draws the loss (every registered name), the channels C (1 = sigmoid, 2, 3), 2D or 3D shapes, the logits' dtype (float32, float64, bfloat16) and a sparse target
(tiny foreground, sometimes none at all); every call must give a finite value and a finite
gradient. Every fourth call also runs the metrics (Dice, HD95, NSD, lesion-wise) on the
thresholded prediction. Resident memory (psutil) after the 200 calls may exceed the level
after a warm-up by at most 50 MB.
"""

from __future__ import annotations

import gc
import math

import numpy as np
import psutil
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from segbalance.evaluate import dice, hd95, lesion_metrics, nsd
from segbalance.losses import available_losses, build_loss

from .conftest import record

CALLS = 200
RSS_LIMIT_MB = 50.0


def _needs(loss: str, classes: int) -> dict:
    """Options a loss needs before training supplies them (a prior, a CALF branch)."""
    if loss in ("la_ce", "balanced"):
        rest = 0.02 / (classes - 1) if classes > 1 else 0.0
        return {"prior": 0.01 if classes == 1 else [1 - 0.02, *[rest] * (classes - 1)]}
    return {"branch": "logit"} if loss == "calf" else {}


_TALLY = {"calls": 0, "nonfinite": 0, "metric_calls": 0}


def _case(loss: str, classes: int, spatial: tuple[int, ...], dtype: torch.dtype, seed: int):
    rng = np.random.default_rng(seed)
    # classes = C, the logits' channels: 1 is binary (sigmoid), C >= 2 has labels 0..C-1
    logits = torch.from_numpy(rng.normal(0, 3, (2, classes, *spatial))).to(dtype)
    top = max(classes - 1, 1)
    target = np.zeros((2, *spatial), dtype=np.int64)
    for b in range(2):
        for _ in range(int(rng.integers(0, 3))):  # 0 to 2 tiny lesions per sample
            corner = tuple(int(rng.integers(0, s - 1)) for s in spatial)
            target[(b, *(slice(c, c + 2) for c in corner))] = int(rng.integers(1, top + 1))
    return logits.requires_grad_(True), torch.from_numpy(target)


def _one_call(loss: str, classes: int, spatial: tuple[int, ...], dtype, seed: int) -> bool:
    logits, target = _case(loss, classes, spatial, dtype, seed)
    value = build_loss(loss, **_needs(loss, classes))(logits, target)
    value.backward()
    ok = math.isfinite(float(value.detach())) and bool(torch.isfinite(logits.grad).all())
    _TALLY["calls"] += 1
    if seed % 4 == 0:
        pred = (logits.detach().float()[0].argmax(0) if classes > 1 else logits[0, 0] > 0).numpy()
        pred, ref = pred.astype(bool), target[0].numpy() > 0
        pred[(0,) * len(spatial)] = ref[(0,) * len(spatial)] = True  # both non-empty
        scores = [dice(pred, ref), hd95(pred, ref), nsd(pred, ref, tolerance=1.0)]
        scores += [v for v in lesion_metrics(pred, ref).values() if isinstance(v, float)]
        ok = ok and all(math.isfinite(s) for s in scores)
        _TALLY["metric_calls"] += 1
    _TALLY["nonfinite"] += not ok
    return ok


SHAPES = st.one_of(
    st.tuples(st.integers(4, 24), st.integers(4, 24)),
    st.tuples(st.integers(4, 12), st.integers(4, 12), st.integers(4, 12)),
)


@settings(max_examples=CALLS, deadline=None, database=None)
@given(
    loss=st.sampled_from(available_losses()),
    classes=st.sampled_from([1, 2, 3]),
    spatial=SHAPES,
    dtype=st.sampled_from([torch.float32, torch.float64, torch.bfloat16]),
    seed=st.integers(0, 2**31 - 1),
)
def _calls(loss, classes, spatial, dtype, seed) -> None:
    assert _one_call(loss, classes, spatial, dtype, seed), (loss, classes, spatial, dtype, seed)


def test_200_loss_and_metric_calls_no_nan_no_leak() -> None:
    process = psutil.Process()
    for seed in range(30):  # warm-up: allocator pools, lazy imports, kernels
        _one_call(available_losses()[seed % 16], 1 + seed % 3, (10, 10, 8), torch.float32, seed)
    _TALLY.update(calls=0, nonfinite=0, metric_calls=0)
    gc.collect()
    before = process.memory_info().rss
    _calls()
    gc.collect()
    growth = (process.memory_info().rss - before) / 2**20
    record(
        "load",
        _TALLY["calls"],
        _TALLY["calls"],
        _TALLY["nonfinite"] + (growth >= RSS_LIMIT_MB),
        fault_word="random calls",
        **{"metric calls": _TALLY["metric_calls"], "RSS growth MB": round(growth, 1)},
    )
    assert _TALLY["calls"] >= CALLS and _TALLY["nonfinite"] == 0
    assert growth < RSS_LIMIT_MB, f"RSS grew by {growth:.1f} MB over {CALLS} calls"
