"""Learning-rate factors against hand-computed values."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segbalance.train.schedule import lr_factor


def test_poly_cosine_constant_by_hand() -> None:
    assert lr_factor("poly", 50, 0.5) == pytest.approx(0.5**0.9)
    assert lr_factor("poly", 50, 0.5, power=2.0, min_lr_ratio=0.1) == pytest.approx(
        0.1 + 0.9 * 0.25
    )
    assert lr_factor("cosine", 50, 0.25) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_factor("cosine", 99, 1.0) == pytest.approx(0.0)
    assert lr_factor("constant", 99, 0.9) == 1.0


def test_warmup_is_linear_then_multiplies_the_decay() -> None:
    assert lr_factor("constant", 0, 0.0, warmup_steps=10) == pytest.approx(0.1)
    assert lr_factor("constant", 4, 0.0, warmup_steps=10) == pytest.approx(0.5)
    assert lr_factor("constant", 9, 0.0, warmup_steps=10) == 1.0
    assert lr_factor("poly", 4, 0.5, warmup_steps=10) == pytest.approx(0.5 * 0.5**0.9)


def test_unknown_schedule() -> None:
    with pytest.raises(ValueError, match="poly, cosine or constant"):
        lr_factor("step", 0, 0.0)


@settings(max_examples=50, deadline=None)
@given(
    name=st.sampled_from(["poly", "cosine"]),
    p=st.floats(0, 1),
    q=st.floats(0, 1),
    m=st.floats(0, 1),
)
def test_decay_is_monotone_and_bounded(name: str, p: float, q: float, m: float) -> None:
    lo, hi = sorted((p, q))
    a = lr_factor(name, 10**6, lo, min_lr_ratio=m)
    b = lr_factor(name, 10**6, hi, min_lr_ratio=m)
    assert m - 1e-12 <= b <= a + 1e-12 <= 1 + 1e-12
