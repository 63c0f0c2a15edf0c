"""Paired statistics for comparing methods on the same cases (METHODS §11).

The unit of analysis is the case. A method's score on a case is its metric averaged over
the foreground classes of the case (NaN skipped), then over seeds; two methods are paired
by case, ``d_i = x_method,i - x_baseline,i`` (always method minus baseline, whatever the
metric's direction). Tests: two-sided Wilcoxon signed-rank (scipy defaults), Holm over the
comparisons of one metric, percentile bootstrap CIs of the mean with
``numpy.random.default_rng(seed)``. Torch-free; the output of :func:`compare_methods` is
the ``stats.json`` schema of DESIGN ("Configs and runs"), with ``null`` for undefined
values so that it is strict JSON.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from segbalance.experiments.significance import (
    bootstrap_ci,
    holm,
    paired_wilcoxon,
)

#: Metrics where a lower value is better; for them a "win" is d < 0.
LOWER_IS_BETTER: frozenset[str] = frozenset({"hd95", "assd"})
#: Metrics whose means leave out (case, class) rows with an empty reference
#: (``ref_voxels == 0``), as MONAI's ``ignore_empty=True`` (METHODS §10 aggregation).
EMPTY_REFERENCE_EXCLUDED: frozenset[str] = frozenset({"dice", "iou", "hd95", "assd", "nsd"})
#: |d| at or below this counts as a tie (metrics are float64; identical predictions give
#: identical values, seed averaging adds at most ~1e-16 of rounding).
TIE_TOLERANCE = 1e-12
DEFAULT_METRICS: tuple[str, ...] = ("dice", "hd95", "nsd", "lesion_f1")


def _finite_or_none(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _as_float(value: Any) -> float:
    """A results.csv cell (str, number, None or "") as float; blanks and junk are NaN."""
    if value is None:
        return math.nan
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return math.nan
        try:
            return float(text)
        except ValueError:
            return math.nan
    return float(value)


def case_scores(
    rows: Iterable[Mapping[str, Any]], metric: str
) -> dict[str, dict[str, dict[str, float]]]:
    """``{cell: {seed: {case: score}}}``: the metric averaged over the classes of each case.

    NaN values are skipped; for :data:`EMPTY_REFERENCE_EXCLUDED` metrics a row with
    ``ref_voxels == 0`` is skipped too (rows without that column are all kept). A case whose
    classes are all skipped scores NaN. Keys are the row strings (``seed`` as text).
    """
    skip_empty = metric in EMPTY_REFERENCE_EXCLUDED
    sums: dict[str, dict[str, dict[str, list[float]]]] = {}
    for row in rows:
        if metric not in row:
            raise ValueError(
                f"Expected a {metric!r} column in the results rows but got {sorted(row)}"
            )
        cell, seed, case = str(row["cell"]), str(row["seed"]), str(row["case"])
        entry = sums.setdefault(cell, {}).setdefault(seed, {}).setdefault(case, [0.0, 0])
        value = _as_float(row[metric])
        if skip_empty and _as_float(row.get("ref_voxels")) == 0:
            continue
        if math.isfinite(value):
            entry[0] += value
            entry[1] += 1
    return {
        cell: {
            seed: {case: (s / k if k else math.nan) for case, (s, k) in by_case.items()}
            for seed, by_case in by_seed.items()
        }
        for cell, by_seed in sums.items()
    }


def _seed_sort_key(seed: str) -> tuple[int, float, str]:
    number = _as_float(seed)
    return (0, number, seed) if math.isfinite(number) else (1, 0.0, seed)


def _nanmean(values: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    # nanmean without the "Mean of empty slice" warning: all-NaN gives NaN.
    finite = np.isfinite(values)
    total = np.where(finite, values, 0.0).sum(axis=axis)
    count = finite.sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _sd(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(np.std(finite, ddof=1)) if finite.size >= 2 else math.nan


def _ci(lo_hi: tuple[float, float]) -> list[float | None]:
    return [_finite_or_none(lo_hi[0]), _finite_or_none(lo_hi[1])]


def compare_methods(
    rows: Iterable[Mapping[str, Any]],
    *,
    baseline: str,
    metric: str = "dice",
    B: int = 10_000,
    seed: int = 0,
    costs: Mapping[str, Mapping[str, float]] | None = None,
    hierarchical: bool = False,
) -> dict[str, Any]:
    """Statistics of every cell against ``baseline`` on one metric (the ``stats.json`` schema).

    Args:
        rows: ``results.csv`` rows (dicts of str or numbers): per_case.csv columns plus
            ``ref_voxels``, ``pred_voxels``, ``cell``, ``loss``, ``optimizer``, ``seed``,
            ``run_dir``. One row per (cell, seed, case, class).
        baseline: the reference cell.
        metric: column to compare.
        B, seed: bootstrap resamples and ``default_rng`` seed of every CI.
        costs: ``{cell: {"train_seconds", "peak_rss_mb"}}`` (means over seeds), copied in.
        hierarchical: the diff CI resamples cases then seeds (pairing seeds by value,
            over the seeds both cells have) instead of cases of the seed-averaged scores.

    Returns:
        ``{"baseline", "metric", "higher_is_better", "sign_convention", "methods": {cell:
        {"mean", "sd", "seed_sd", "seed_means", "ci95", "diff_ci95", "mean_diff",
        "p_value", "p_holm", "wins", "ties", "losses", "n_cases", "n_seeds",
        "train_seconds", "peak_rss_mb"}}, "tests": [...]}``. ``sd`` is over case scores,
        ``seed_sd`` over seeds of the dataset-level mean; ``ci95`` is the case bootstrap of
        the mean; ``diff_ci95``/``p_value``/``p_holm``/``wins``... are null for the
        baseline. ``d = method - baseline`` always; for lower-is-better metrics (hd95,
        assd) a win is ``d < -TIE_TOLERANCE``, else ``d > TIE_TOLERANCE``.
    """
    rows = list(rows)
    scores = case_scores(rows, metric)
    if baseline not in scores:
        from segbalance.errors import did_you_mean

        raise ValueError(
            f"Expected baseline to be one of the cells {sorted(scores)} but got "
            f"{baseline!r}{did_you_mean(baseline, sorted(scores))}"
        )
    higher = metric not in LOWER_IS_BETTER
    cases = sorted({case for by_seed in scores.values() for s in by_seed.values() for case in s})
    tables: dict[str, tuple[list[str], np.ndarray]] = {}
    for cell, by_seed in scores.items():
        seeds = sorted(by_seed, key=_seed_sort_key)
        # (n_cases, n_seeds); a case a seed did not evaluate is NaN
        table = np.array([[by_seed[s].get(c, math.nan) for s in seeds] for c in cases])
        tables[cell] = (seeds, table.reshape(len(cases), len(seeds)))

    methods: dict[str, dict[str, Any]] = {}
    tests: list[dict[str, Any]] = []
    base_seeds, base_table = tables[baseline]
    base_scores = np.asarray(_nanmean(base_table, axis=1), dtype=np.float64)
    for cell, (seeds, table) in tables.items():
        per_case = np.asarray(_nanmean(table, axis=1), dtype=np.float64)
        seed_means = np.asarray(_nanmean(table, axis=0), dtype=np.float64).reshape(-1)
        cost = (costs or {}).get(cell, {})
        entry: dict[str, Any] = {
            "mean": _finite_or_none(_nanmean(per_case)),
            "sd": _finite_or_none(_sd(per_case)),
            "seed_sd": _finite_or_none(_sd(seed_means)),
            "seed_means": {s: _finite_or_none(v) for s, v in zip(seeds, seed_means, strict=True)},
            "ci95": _ci(bootstrap_ci(per_case, B=B, seed=seed)),
            "diff_ci95": None,
            "mean_diff": None,
            "p_value": None,
            "p_holm": None,
            "wins": None,
            "ties": None,
            "losses": None,
            "n_cases": int(np.count_nonzero(np.isfinite(per_case))),
            "n_seeds": len(seeds),
            "train_seconds": _optional_float(cost.get("train_seconds")),
            "peak_rss_mb": _optional_float(cost.get("peak_rss_mb")),
        }
        methods[cell] = entry
        if cell == baseline:
            continue
        d = per_case - base_scores
        d_finite = d[np.isfinite(d)]
        better = d_finite > TIE_TOLERANCE if higher else d_finite < -TIE_TOLERANCE
        worse = d_finite < -TIE_TOLERANCE if higher else d_finite > TIE_TOLERANCE
        if hierarchical:
            common = [s for s in seeds if s in base_seeds]
            d_matrix = (
                table[:, [seeds.index(s) for s in common]]
                - base_table[:, [base_seeds.index(s) for s in common]]
            )
            diff_ci = bootstrap_ci(d_matrix, B=B, seed=seed, hierarchical=True)
        else:
            diff_ci = bootstrap_ci(d, B=B, seed=seed)
        test = paired_wilcoxon(per_case, base_scores)
        entry.update(
            diff_ci95=_ci(diff_ci),
            mean_diff=_finite_or_none(test["mean_diff"]),
            p_value=_finite_or_none(test["p"]),
            wins=int(np.count_nonzero(better)),
            ties=int(d_finite.size - np.count_nonzero(better) - np.count_nonzero(worse)),
            losses=int(np.count_nonzero(worse)),
        )
        tests.append(
            {
                "methods": [cell, baseline],
                "metric": metric,
                "test": "wilcoxon signed-rank, two-sided, zero_method=wilcox, method=auto",
                "n": test["n"],
                "n_pairs": test["n_pairs"],
                "n_zero": test["n_zero"],
                "n_dropped_nan": test["n_dropped_nan"],
                "statistic": _finite_or_none(test["statistic"]),
                "w_plus": _finite_or_none(test["w_plus"]),
                "w_minus": _finite_or_none(test["w_minus"]),
                "p": _finite_or_none(test["p"]),
                "p_holm": None,
                "median_diff": _finite_or_none(test["median_diff"]),
                "mean_diff": _finite_or_none(test["mean_diff"]),
                "effect_size": {"rank_biserial": _finite_or_none(test["rank_biserial"])},
                "ci95": _ci(diff_ci),
                "ci_method": "hierarchical bootstrap" if hierarchical else "case bootstrap",
                "B": int(B),
                "rng_seed": int(seed),
                "reason": test["reason"],
            }
        )
    adjusted = holm([math.nan if t["p"] is None else t["p"] for t in tests])
    for t, p_holm in zip(tests, adjusted, strict=True):
        t["p_holm"] = _finite_or_none(p_holm)
        methods[t["methods"][0]]["p_holm"] = t["p_holm"]
    return {
        "baseline": baseline,
        "metric": metric,
        "higher_is_better": higher,
        "sign_convention": "d = method - baseline",
        "unit": "case (classes averaged, then seeds)",
        "methods": methods,
        "tests": tests,
    }


def _optional_float(value: Any) -> float | None:
    return None if value is None else _finite_or_none(_as_float(value))


def all_metric_stats(
    rows: Iterable[Mapping[str, Any]],
    baseline: str,
    metrics: Sequence[str] = DEFAULT_METRICS,
    **options: Any,
) -> dict[str, dict[str, Any]]:
    """``{metric: compare_methods(rows, baseline=baseline, metric=metric, **options)}``."""
    rows = list(rows)
    return {
        metric: compare_methods(rows, baseline=baseline, metric=metric, **options)
        for metric in metrics
    }
