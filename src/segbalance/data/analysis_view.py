"""Terminal table and histogram figure for the ``imbalance_stats`` dict (``segbalance analyze``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def render_stats(stats: dict, console, *, per_case: bool = False) -> None:
    """Print the statistics as rich tables on ``console``."""
    from rich.table import Table

    title = f"{stats['name']} ({stats['layout']}, {stats['n_cases']} cases): {stats['dataset']}"
    table = Table(title=title)
    for column in (
        "class",
        "mean fg %",
        "median %",
        "min-max %",
        "skew",
        "ex.kurt",
        "lesions",
        "per case",
        "median size",
        "< 10 vox",
    ):
        table.add_column(column, justify="right" if column != "class" else "left")
    for cls, s in stats["summary"].items():
        table.add_row(
            f"{cls} {stats['classes'][cls]}",
            f"{100 * s['mean_fraction']:.4f}",
            f"{100 * s['median_fraction']:.4f}",
            f"{100 * s['min_fraction']:.4f}-{100 * s['max_fraction']:.4f}",
            _num(s["skewness"]),
            _num(s["excess_kurtosis"]),
            str(s["lesions_total"]),
            f"{s['lesions_per_case_mean']:.2f}",
            _num(s["lesion_size_median_voxels"], "{:.1f}"),
            str(s["lesions_under_10_voxels"]),
        )
    console.print(table)
    if per_case:
        cases = Table(title="per case (fraction %, lesions)")
        cases.add_column("case")
        cases.add_column("shape")
        cases.add_column("spacing")
        for cls in stats["classes"]:
            cases.add_column(f"class {cls}", justify="right")
        for entry in stats["cases"]:
            cells = [
                f"{100 * c['fraction']:.4f} ({c['lesions']})" for c in entry["classes"].values()
            ]
            cases.add_row(
                entry["case"],
                "x".join(map(str, entry["shape"])),
                ",".join(f"{v:g}" for v in entry["spacing"]),
                *cells,
            )
        console.print(cases)
    prior = ", ".join(f"{k}: {v:.6g}" for k, v in stats["prior"].items())
    console.print(f"[bold]logit-adjustment prior[/bold] (voxel frequency): {prior}")
    calf = stats["calf"]
    for cls, branch in calf["branch"].items():
        console.print(
            f"[bold]CALF[/bold] class {cls}: [cyan]{branch}[/cyan] = {calf['transform'][cls]}; decision: {calf['path'][cls]}"
        )
    suggested = stats["suggested"]
    console.print(
        f"[bold]suggested[/bold] patch {'x'.join(map(str, suggested['patch_size']))} ({suggested['patch_axes']}), "
        f"oversample_foreground {suggested['oversample_foreground']:.3g} ({suggested['reason']})"
    )


def plot_stats(stats: dict, path: str | Path) -> Path:
    """Histograms of per-case foreground fraction and lesion size (log scales) to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_frac, ax_size) = plt.subplots(1, 2, figsize=(10, 4))
    for cls, name in stats["classes"].items():
        fractions = np.array([c["classes"][cls]["fraction"] for c in stats["cases"]])
        sizes = np.array(
            [s for c in stats["cases"] for s in c["classes"][cls]["lesion_sizes_voxels"]]
        )
        positive = fractions[fractions > 0]
        if positive.size:
            ax_frac.hist(positive, bins=_log_bins(positive), alpha=0.6, label=f"{cls} {name}")
        if sizes.size:
            ax_size.hist(sizes, bins=_log_bins(sizes), alpha=0.6, label=f"{cls} {name}")
    ax_frac.set_xscale("log")
    ax_frac.set_xlabel("foreground fraction per case")
    ax_frac.set_ylabel("cases")
    ax_size.set_xscale("log")
    ax_size.set_yscale("log")
    ax_size.set_xlabel("lesion size (voxels, 26-connected)")
    ax_size.set_ylabel("lesions")
    for ax in (ax_frac, ax_size):
        ax.legend(fontsize="small")
    fig.suptitle(f"{stats['name']}: {stats['n_cases']} cases")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _log_bins(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.array([low * 0.9, high * 1.1])
    return np.geomspace(low, high * 1.0001, num=min(30, max(5, values.size // 2)) + 1)


def _num(value: float | None, fmt: str = "{:.3f}") -> str:
    return "n/a" if value is None else fmt.format(value)
