"""Paired statistics (METHODS §11) against the worked example, scipy and hand-built tables."""

from __future__ import annotations

import json
import math
import random
import statistics
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats

from segbalance.experiments.stats import (
    all_metric_stats,
    bootstrap_ci,
    case_scores,
    compare_methods,
    holm,
    paired_wilcoxon,
)

WORKED_D = (0.02, 0.05, -0.01, 0.03, 0.04, 0.00, 0.06, 0.01)


def half_up(value: float, digits: int = 4) -> float:
    # METHODS prints half-up. Resampled means lie on a grid (multiples of 0.01 / 8), so the
    # endpoints are grid values up to float rounding (0.04125 comes out 1 ulp low): snap first.
    snapped = Decimal(repr(round(value, 10)))
    return float(snapped.quantize(Decimal(10) ** -digits, rounding=ROUND_HALF_UP))


def test_methods_worked_example() -> None:
    test = paired_wilcoxon(WORKED_D, [0.0] * len(WORKED_D))
    assert test["n"] == 7 and test["n_zero"] == 1 and test["n_pairs"] == 8
    assert round(test["mean_diff"], 4) == 0.0250
    assert round(test["p"], 4) == 0.0469
    assert test["p"] == pytest.approx(6 / 128)  # exact null: 6 of 2^7 sign patterns
    lo, hi = bootstrap_ci(WORKED_D, B=10_000, seed=0)
    assert (half_up(lo), half_up(hi)) == (0.0088, 0.0413)
    assert lo == pytest.approx(0.00875, abs=1e-12) and hi == pytest.approx(0.04125, abs=1e-12)


def test_worked_example_signed_ranks_by_hand() -> None:
    # |d| without the zero: 0.01 (x2, ranks 1.5), 0.02 (3), 0.03 (4), 0.04 (5), 0.05 (6),
    # 0.06 (7); only -0.01 is negative -> W- = 1.5, W+ = 28 - 1.5.
    test = paired_wilcoxon(WORKED_D, [0.0] * 8)
    assert test["w_minus"] == 1.5 and test["w_plus"] == 26.5 and test["statistic"] == 1.5
    assert test["rank_biserial"] == pytest.approx((26.5 - 1.5) / 28)
    assert test["median_diff"] == pytest.approx(0.025)


def test_bootstrap_matches_scipy_percentile_bootstrap() -> None:
    d = np.random.default_rng(3).normal(0.01, 0.05, size=13)
    ours = bootstrap_ci(d, B=2000, seed=7, level=0.9)
    ref = scipy_stats.bootstrap(
        (d,),
        np.mean,
        n_resamples=2000,
        method="percentile",
        confidence_level=0.9,
        vectorized=True,
        random_state=np.random.default_rng(7),
    ).confidence_interval
    assert ours == pytest.approx((ref.low, ref.high), abs=1e-12)


def test_bootstrap_loop_reference_and_nan_dropped() -> None:
    d = np.array([0.3, -0.1, 0.2, np.nan, 0.05, 0.4])
    finite = d[np.isfinite(d)]
    rng = np.random.default_rng(11)
    means = [finite[rng.integers(0, finite.size, finite.size)].mean() for _ in range(500)]
    assert bootstrap_ci(d, B=500, seed=11) == pytest.approx(
        tuple(np.percentile(means, [2.5, 97.5])), abs=1e-12
    )
    assert all(math.isnan(v) for v in bootstrap_ci([math.nan, math.nan]))


def test_hierarchical_reduces_to_case_bootstrap() -> None:
    rng = np.random.default_rng(0)
    d = rng.normal(size=10)
    # one seed: the seed draw picks the only column
    assert bootstrap_ci(d[:, None], B=300, seed=2, hierarchical=True) == pytest.approx(
        bootstrap_ci(d, B=300, seed=2), abs=1e-12
    )
    # seeds identical within a case: resampling seeds changes nothing
    assert bootstrap_ci(np.repeat(d[:, None], 3, 1), B=300, seed=2, hierarchical=True) == (
        pytest.approx(bootstrap_ci(d, B=300, seed=2), abs=1e-12)
    )


def test_hierarchical_by_hand_loop() -> None:
    table = np.random.default_rng(5).normal(size=(6, 3))
    rng = np.random.default_rng(9)
    cases = rng.integers(0, 6, (200, 6))
    seeds = rng.integers(0, 3, (200, 6, 3))
    means = [
        np.mean([[table[cases[b, i], seeds[b, i, j]] for j in range(3)] for i in range(6)])
        for b in range(200)
    ]
    assert bootstrap_ci(table, B=200, seed=9, hierarchical=True) == pytest.approx(
        tuple(np.percentile(means, [2.5, 97.5])), abs=1e-12
    )
    # wider than the seed-averaged case bootstrap: seed noise adds variance
    lo_h, hi_h = bootstrap_ci(table, B=4000, seed=1, hierarchical=True)
    lo_c, hi_c = bootstrap_ci(table.mean(axis=1), B=4000, seed=1)
    assert hi_h - lo_h > hi_c - lo_c


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"B": 0}, "B"), ({"level": 1.0}, "level"), ({"hierarchical": True}, "n_seeds")],
)
def test_bootstrap_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        bootstrap_ci([0.1, 0.2], **kwargs)


def test_holm_hand_example_and_nan() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    # m = 3 valid; 0.02*3 = 0.06, 0.5*2 = 1.0, 0.9 -> max(1.0, 0.9) = 1.0 (capped)
    out = holm([0.5, math.nan, 0.02, 0.9])
    assert math.isnan(out[1])
    assert out[0] == pytest.approx(1.0) and out[2] == pytest.approx(0.06) and out[3] == 1.0
    with pytest.raises(ValueError, match="p-values"):
        holm([1.5])


def holm_by_definition(p: list[float]) -> list[float]:
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    out = [0.0] * m
    for k, i in enumerate(order):
        out[i] = min(1.0, max((m - j) * p[order[j]] for j in range(k + 1)))
    return out


@settings(max_examples=60)
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=12))
def test_holm_properties(p: list[float]) -> None:
    adjusted = holm(p)
    assert adjusted == pytest.approx(holm_by_definition(p))
    assert all(a >= raw - 1e-15 and a <= 1.0 for a, raw in zip(adjusted, p, strict=True))
    order = np.argsort(p, kind="stable")
    assert np.all(np.diff(np.asarray(adjusted)[order]) >= 0)


# Wide integer range: ties in |d| are rare (with ties and n <= 13 scipy's default runs an
# exhaustive permutation test, ~1 s each); the worked example covers a tie.
paired_samples = st.integers(1, 25).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(-300, 300), min_size=n, max_size=n),
        st.lists(st.integers(-300, 300), min_size=n, max_size=n),
    )
)


@settings(max_examples=40)
@given(paired_samples)
def test_wilcoxon_against_scipy_and_swap(sample: tuple[list[int], list[int]]) -> None:
    a = np.asarray(sample[0], dtype=np.float64) / 100
    b = np.asarray(sample[1], dtype=np.float64) / 100
    test = paired_wilcoxon(a, b)
    d = a - b
    nonzero = d[d != 0]
    assert test["n"] == nonzero.size
    if nonzero.size == 0:
        assert math.isnan(test["p"]) and test["reason"] == "all paired differences are zero"
        return
    ref = scipy_stats.wilcoxon(d)
    assert test["p"] == ref.pvalue and test["statistic"] == ref.statistic
    # signed ranks by hand: average rank = mean position among equal |d|
    absd = np.abs(nonzero)
    ranks = np.array([np.sum(absd < x) + (np.sum(absd == x) + 1) / 2 for x in absd])
    assert test["w_plus"] == pytest.approx(ranks[nonzero > 0].sum())
    assert test["w_plus"] + test["w_minus"] == pytest.approx(nonzero.size * (nonzero.size + 1) / 2)
    swapped = paired_wilcoxon(b, a)
    assert swapped["p"] == test["p"]
    assert swapped["rank_biserial"] == pytest.approx(-test["rank_biserial"])
    assert -1.0 <= test["rank_biserial"] <= 1.0


@settings(max_examples=30)
@given(st.lists(st.integers(-50, 50), min_size=1, max_size=15), st.integers(0, 2**16))
def test_bootstrap_swap_mirrors_ci(values: list[int], seed: int) -> None:
    d = np.asarray(values, dtype=np.float64) / 100
    lo, hi = bootstrap_ci(d, B=400, seed=seed)
    neg_lo, neg_hi = bootstrap_ci(-d, B=400, seed=seed)
    assert (neg_lo, neg_hi) == pytest.approx((-hi, -lo), abs=1e-12)
    assert d.min() - 1e-12 <= lo <= hi <= d.max() + 1e-12


def test_wilcoxon_nan_pairs_dropped() -> None:
    test = paired_wilcoxon([1.0, math.nan, 3.0, 2.0], [0.0, 1.0, 1.0, math.nan])
    assert test["n_dropped_nan"] == 2 and test["n"] == 2
    assert test["p"] == scipy_stats.wilcoxon([1.0, 2.0]).pvalue
    empty = paired_wilcoxon([math.nan], [1.0])
    assert empty["n"] == 0 and math.isnan(empty["p"]) and empty["reason"] == "no finite pairs"
    with pytest.raises(ValueError, match="equal length"):
        paired_wilcoxon([1.0], [1.0, 2.0])


# --- aggregation over classes, seeds and cases -------------------------------------------

REF_VOXELS = {("c1", 1): 10, ("c1", 2): 5, ("c2", 1): 8, ("c2", 2): 4, ("c3", 1): 6, ("c3", 2): 0}
# (cell, seed, case) -> (class 1, class 2) values; class 2 of c3 has an empty reference
VALUES = {
    ("A", 0, "c1"): (0.8, 0.6),
    ("A", 0, "c2"): (0.5, math.nan),
    ("A", 0, "c3"): (0.9, 0.0),
    ("A", 1, "c1"): (0.6, 0.4),
    ("A", 1, "c2"): (0.7, 0.5),
    ("A", 1, "c3"): (0.7, 1.0),
    ("B", 0, "c1"): (0.9, 0.7),
    ("B", 0, "c2"): (0.5, 0.5),
    ("B", 0, "c3"): (0.8, 0.3),
    ("B", 1, "c1"): (0.7, 0.5),
    ("B", 1, "c2"): (0.6, 0.6),
    ("B", 1, "c3"): (1.0, 0.0),
}


def hand_rows(*, with_ref: bool = True, as_text: bool = True) -> list[dict]:
    rows = []
    for (cell, seed, case), pair in VALUES.items():
        for cls, value in zip((1, 2), pair, strict=True):
            row = {
                "case": case,
                "class": cls,
                "class_name": f"k{cls}",
                "dice": value,
                "hd95": value,
                "lesion_f1": value,
                "cell": cell,
                "loss": "dice",
                "optimizer": "adamw",
                "seed": seed,
                "run_dir": f"runs/{cell}-seed{seed}",
            }
            if with_ref:
                row["ref_voxels"] = REF_VOXELS[(case, cls)]
            if as_text:  # as csv.DictReader gives them
                row = {
                    k: ("" if isinstance(v, float) and math.isnan(v) else str(v))
                    for k, v in row.items()
                }
            rows.append(row)
    return rows


def test_case_scores_by_hand() -> None:
    scores = case_scores(hand_rows(), "dice")
    assert scores["A"]["0"] == pytest.approx({"c1": 0.7, "c2": 0.5, "c3": 0.9})
    assert scores["A"]["1"] == pytest.approx({"c1": 0.5, "c2": 0.6, "c3": 0.7})
    # lesion_f1 keeps empty-reference rows: c3 of A seed 0 = (0.9 + 0.0) / 2
    assert case_scores(hand_rows(), "lesion_f1")["A"]["0"]["c3"] == pytest.approx(0.45)
    # without a ref_voxels column every row counts
    assert case_scores(hand_rows(with_ref=False), "dice")["A"]["1"]["c3"] == pytest.approx(0.85)


def test_compare_methods_by_hand() -> None:
    result = compare_methods(
        hand_rows(),
        baseline="A",
        metric="dice",
        B=1000,
        seed=3,
        costs={"B": {"train_seconds": 12.5, "peak_rss_mb": 300.0}},
    )
    a, b = result["methods"]["A"], result["methods"]["B"]
    # case scores (mean over seeds of the class means): A (0.6, 0.55, 0.8), B (0.7, 0.55, 0.9)
    assert a["mean"] == pytest.approx((0.6 + 0.55 + 0.8) / 3)
    assert a["sd"] == pytest.approx(statistics.stdev([0.6, 0.55, 0.8]))
    # dataset-level mean per seed: A 0.7 / 0.6, B 0.7 / 0.7333
    assert a["seed_sd"] == pytest.approx(statistics.stdev([0.7, 0.6]))
    assert b["seed_sd"] == pytest.approx(statistics.stdev([0.7, 2.2 / 3]))
    assert b["seed_means"] == pytest.approx({"0": 0.7, "1": 2.2 / 3})
    assert (b["wins"], b["ties"], b["losses"]) == (2, 1, 0)
    assert b["mean_diff"] == pytest.approx(0.2 / 3)
    assert b["p_value"] == pytest.approx(0.5) and b["p_holm"] == pytest.approx(0.5)
    assert b["ci95"] == pytest.approx(list(bootstrap_ci([0.7, 0.55, 0.9], B=1000, seed=3)))
    assert b["diff_ci95"] == pytest.approx(list(bootstrap_ci([0.1, 0.0, 0.1], B=1000, seed=3)))
    assert b["n_cases"] == 3 and b["n_seeds"] == 2
    assert (b["train_seconds"], b["peak_rss_mb"]) == (12.5, 300.0)
    assert a["p_value"] is None and a["wins"] is None and a["train_seconds"] is None
    (test,) = result["tests"]
    assert test["methods"] == ["B", "A"] and test["n"] == 2 and test["n_zero"] == 1
    assert test["B"] == 1000 and test["rng_seed"] == 3 and test["ci95"] == b["diff_ci95"]
    json.dumps(result, allow_nan=False)  # strict JSON: undefined values are null


def test_lower_is_better_wins_and_row_order() -> None:
    rows = hand_rows(as_text=False)
    hd = compare_methods(rows, baseline="A", metric="hd95", B=200)
    b = hd["methods"]["B"]
    assert hd["higher_is_better"] is False
    # same numbers as dice: d = +0.1 twice -> worse for a distance
    assert (b["wins"], b["ties"], b["losses"]) == (0, 1, 2)
    assert b["mean_diff"] == pytest.approx(0.2 / 3)
    shuffled = rows[:]
    random.Random(0).shuffle(shuffled)
    assert compare_methods(shuffled, baseline="A", metric="hd95", B=200) == hd


def test_holm_across_cells_and_errors() -> None:
    rng = np.random.default_rng(0)
    rows = []
    for cell, shift in (("base", 0.0), ("x", 0.05), ("y", 0.2), ("z", -0.01)):
        for case in range(8):
            value = 0.5 + shift + 0.03 * rng.normal()
            rows.append({"cell": cell, "seed": 0, "case": f"c{case}", "dice": value})
    result = compare_methods(rows, baseline="base", B=200)
    raw = [t["p"] for t in result["tests"]]
    assert [t["methods"][0] for t in result["tests"]] == ["x", "y", "z"]
    assert [t["p_holm"] for t in result["tests"]] == pytest.approx(holm(raw))
    with pytest.raises(ValueError, match="did you mean 'base'"):
        compare_methods(rows, baseline="bsae")
    with pytest.raises(ValueError, match="'nsd' column"):
        compare_methods(rows, baseline="base", metric="nsd")


def test_hierarchical_option_pairs_seeds() -> None:
    rows = hand_rows(as_text=False)
    result = compare_methods(rows, baseline="A", B=500, seed=1, hierarchical=True)
    # per (case, seed) differences B - A of the class means (seed 0, seed 1)
    d = [[0.8 - 0.7, 0.6 - 0.5], [0.5 - 0.5, 0.6 - 0.6], [0.8 - 0.9, 1.0 - 0.7]]
    expected = bootstrap_ci(np.array(d), B=500, seed=1, hierarchical=True)
    assert result["methods"]["B"]["diff_ci95"] == pytest.approx(list(expected))
    assert result["tests"][0]["ci_method"] == "hierarchical bootstrap"


def test_all_metric_stats_keys() -> None:
    rows = hand_rows()
    out = all_metric_stats(rows, "A", metrics=("dice", "lesion_f1"), B=100)
    assert set(out) == {"dice", "lesion_f1"}
    assert out["lesion_f1"] == compare_methods(rows, baseline="A", metric="lesion_f1", B=100)


@given(st.integers(0, 80), st.integers(0, 80))
@settings(max_examples=200, deadline=None)
def test_mcnemar_exact_matches_scipy_binomtest(only_a: int, only_b: int) -> None:
    from scipy.stats import binomtest

    from segbalance.experiments.significance import mcnemar_exact

    n = only_a + only_b
    expected = 1.0 if n == 0 else binomtest(only_a, n, 0.5).pvalue
    assert mcnemar_exact(only_a, only_b) == pytest.approx(expected, rel=1e-12, abs=1e-300)
    assert mcnemar_exact(only_a, only_b) == mcnemar_exact(only_b, only_a)


def test_mcnemar_exact_worked_example_and_errors() -> None:
    from segbalance.experiments.significance import mcnemar_exact

    assert mcnemar_exact(8, 1) == pytest.approx(2 * 10 / 512)  # 2 * P[Binom(9, 1/2) <= 1]
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(3, 3) == 1.0
    with pytest.raises(ValueError, match="Expected two counts >= 0 but got -1, 2"):
        mcnemar_exact(-1, 2)
