"""A comparison repeated over the values of one config key (``sweep`` in a compare config).

    sweep: {key: phantom.fg_fraction, values: [0.02, 0.002, 0.0002]}

runs the whole grid once per value, each in ``OUTPUT/<key>=<value>/`` (a normal compare
folder with its own statistics and report; finished runs are reused as usual), then writes
``OUTPUT/sweep.json`` (per value and cell: mean score with its 95 % CI and the paired
difference to the baseline) and ``OUTPUT/sweep.png``: how each method's score moves with
the swept setting, e.g. how the advantage of an imbalance remedy grows with the imbalance.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from segbalance.atomic import atomic_write_bytes, atomic_write_text
from segbalance.config import CompareConfig, set_dotted, validate_config

SWEEP_JSON = "sweep.json"
SWEEP_FIGURE = "sweep.png"


def sweep_folder_name(key: str, value: Any) -> str:
    """``fg_fraction=0.002`` for ``phantom.fg_fraction`` and 0.002 (safe as a folder name)."""
    text = json.dumps(value) if not isinstance(value, str) else value
    safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in text)
    return f"{key.rsplit('.', 1)[-1]}={safe}"


def sweep_configs(cfg: CompareConfig, where: str = "compare") -> list[tuple[Any, CompareConfig]]:
    """One validated compare config per swept value (``InputError`` naming the key if bad)."""
    if cfg.sweep is None:
        raise ValueError("sweep_configs: the config has no sweep")
    out = []
    for value in cfg.sweep.values:
        raw = cfg.model_dump(mode="json", exclude={"sweep"})  # a fresh copy per value
        set_dotted(raw, cfg.sweep.key, value, f"{where}: sweep.key")
        raw["output"] = str(Path(cfg.output) / sweep_folder_name(cfg.sweep.key, value))
        out.append((value, validate_config(raw, CompareConfig, f"{where}: sweep {value!r}")))
    return out


def summarise_sweep(cfg: CompareConfig, points: list[tuple[Any, Path]]) -> dict[str, Any]:
    """``sweep.json``'s content from the ``stats.json`` of every value's compare folder."""
    per_value: list[dict[str, Any]] = []
    metric = "dice"
    for _, folder in points:
        stats = json.loads((folder / "stats.json").read_text())
        metric = stats.get("metric", metric)
        per_value.append(stats["methods"])
    cells = list(dict.fromkeys(c for methods in per_value for c in methods))
    fields = ("mean", "ci95", "mean_diff", "diff_ci95", "p_holm")
    # one point per value for every cell (all None where a cell has no result there)
    table = {
        cell: [
            {"value": value, **{f: methods.get(cell, {}).get(f) for f in fields}}
            for (value, _), methods in zip(points, per_value, strict=True)
        ]
        for cell in cells
    }
    return {
        "key": cfg.sweep.key if cfg.sweep else None,
        "values": [v for v, _ in points],
        "folders": [folder.name for _, folder in points],
        "metric": metric,
        "baseline": cfg.baseline_cell,
        "methods": table,
    }


def sweep_figure_png(summary: dict[str, Any]) -> bytes:
    """PNG bytes: mean score vs swept value, one line per method with its 95 % CI as error
    bars (a distinct colour/marker per method, ``segbalance.palette``; each method shifted
    a little along x so that equal scores stay visible), the baseline in black; log x axis
    for positive numbers. Built on a ``Figure``
    with the Agg canvas (no pyplot: no global matplotlib state is touched)."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from segbalance.palette import BASELINE_COLOR, method_style

    values = summary["values"]
    numeric = all(isinstance(v, int | float) and v > 0 for v in values)
    fig = Figure(figsize=(8.5, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    n_methods = len(summary["methods"])
    for index, (cell, points) in enumerate(summary["methods"].items()):
        # a small horizontal offset per method, so equal scores (e.g. all at 0) stay visible
        shift = (index - (n_methods - 1) / 2) * 0.012
        xs = [p["value"] * 10**shift if numeric else i + shift for i, p in enumerate(points)]
        ys, lo, hi = [], [], []
        for p in points:
            y = math.nan if p["mean"] is None else float(p["mean"])
            low, high = p["ci95"] if p["ci95"] and None not in p["ci95"] else (y, y)
            ys.append(y)
            lo.append(y - low)
            hi.append(high - y)
        color, marker, line = method_style(index)
        if cell == summary["baseline"]:
            color, marker, line = BASELINE_COLOR, "o", "-"
        ax.errorbar(
            xs, ys, yerr=[lo, hi], color=color, marker=marker, linestyle=line, label=cell, capsize=2
        )
    if numeric:
        ax.set_xscale("log")
    else:
        ax.set_xticks(range(len(values)), [str(v) for v in values])
    ax.set_xlabel(summary["key"])
    ax.set_ylabel(f"mean {summary['metric']} (95 % CI)")
    ax.grid(alpha=0.3)
    # outside the axes: with a dozen methods a legend inside hides the data
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    return buffer.getvalue()


def run_sweep(
    cfg: CompareConfig,
    *,
    where: str = "compare",
    jobs: int | None = None,
    progress: bool = True,
    after_each: Callable[[Path], None] | None = None,
) -> list[str]:
    """Run the comparison once per swept value, calling ``after_each(folder)`` after each
    (the CLI builds that value's report there), then write ``sweep.json`` and ``sweep.png``.
    Returns the failed runs as ``<value folder>/<run>``."""
    from segbalance.experiments.compare import run_compare

    failed, points = [], []
    for value, sub in sweep_configs(cfg, where):
        print(f"sweep {cfg.sweep.key} = {value!r}: {sub.output}")
        manifest = run_compare(sub, where=where, jobs=jobs, progress=progress)
        failed += [f"{Path(sub.output).name}/{name}" for name in manifest["failed"]]
        points.append((value, Path(sub.output)))
        if after_each is not None:
            after_each(Path(sub.output))
    write_sweep(cfg, points)
    return failed


def write_sweep(cfg: CompareConfig, points: list[tuple[Any, Path]]) -> dict[str, Any]:
    """Write ``sweep.json`` and ``sweep.png`` into ``cfg.output``; return the summary."""
    summary = summarise_sweep(cfg, points)
    out = Path(cfg.output)
    atomic_write_text(out / SWEEP_JSON, json.dumps(summary, indent=1))
    atomic_write_bytes(out / SWEEP_FIGURE, sweep_figure_png(summary))
    return summary
