"""Matplotlib figures of the report, returned as base64 PNG strings.

Figures are built with :class:`matplotlib.figure.Figure` and the Agg canvas directly
(never pyplot), so building a report changes no global matplotlib state and needs no
display. Every function takes plain data and raises ``ValueError`` on empty input: the
caller turns that into a "not available" note rather than an empty figure.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import NullFormatter

DPI = 100
REFERENCE_COLOR = "#00c853"
PREDICTION_COLOR = "#ff1744"


def _figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, list]:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def to_png_base64(fig: Figure) -> str:
    """The figure as a base64 PNG (no metadata, so equal figures give equal bytes)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _finite(values: Sequence[float | None]) -> np.ndarray:
    array = np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)
    return array[np.isfinite(array)]


def score_figure(
    methods: Sequence[str],
    means: Sequence[float | None],
    intervals: Sequence[Sequence[float | None] | None],
    case_scores: Mapping[str, Sequence[float]],
    colors: Mapping[str, str],
    metric: str = "Dice",
) -> str:
    """Bars of the mean with its 95 % CI, and the per-case scores as a jittered strip.

    ``methods[k]`` has mean ``means[k]``, CI ``intervals[k] = (lo, hi)`` and per-case
    scores ``case_scores[methods[k]]`` (seed-averaged).
    """
    if not methods:
        raise ValueError("Expected at least one method")
    fig, (ax,) = _figure(max(4.0, 1.1 * len(methods) + 2.0), 3.6)
    rng = np.random.default_rng(0)  # fixed jitter: the same report for the same inputs
    for k, method in enumerate(methods):
        mean = math.nan if means[k] is None else float(means[k])
        color = colors.get(method, "#777777")
        ax.bar(k, mean if math.isfinite(mean) else 0.0, width=0.6, color=color, alpha=0.35)
        interval = intervals[k]
        if math.isfinite(mean) and interval and None not in interval:
            lo, hi = float(interval[0]), float(interval[1])
            ax.errorbar(k, mean, yerr=[[mean - lo], [hi - mean]], color="black", capsize=5)
        scores = _finite(case_scores.get(method, []))
        jitter = rng.uniform(-0.18, 0.18, scores.size)
        ax.scatter(k + jitter, scores, s=12, color=color, edgecolor="black", linewidth=0.3)
    ax.set_xticks(range(len(methods)), list(methods), rotation=20, ha="right")
    ax.set_ylabel(f"{metric} (per case, mean over seeds)")
    ax.grid(axis="y", alpha=0.3)
    return to_png_base64(fig)


def detection_figure(
    bins: Sequence[str],
    rates: Mapping[str, Sequence[float]],
    colors: Mapping[str, str],
    xlabel: str = "reference lesion size (voxels)",
) -> str:
    """Grouped bars: detection rate per size bin (x) and method (colour); NaN bins blank."""
    if not bins or not rates:
        raise ValueError("Expected at least one bin and one method")
    fig, (ax,) = _figure(max(5.0, 1.4 * len(bins) + 2.5), 3.4)
    width = 0.8 / len(rates)
    for k, (method, values) in enumerate(rates.items()):
        x = np.arange(len(bins)) + (k - (len(rates) - 1) / 2) * width
        heights = np.array([math.nan if v is None else float(v) for v in values])
        ax.bar(x, np.nan_to_num(heights), width=width, color=colors.get(method), label=method)
    ax.set_xticks(range(len(bins)), list(bins))
    ax.set_ylim(0, 1.05)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("lesions detected (fraction)")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    return to_png_base64(fig)


@dataclass
class Curve:
    """One run's training curves: ``loss`` at ``steps``, ``val_dice`` at ``val_steps``."""

    cell: str
    label: str
    steps: Sequence[float]
    loss: Sequence[float]
    val_steps: Sequence[float]
    val_dice: Sequence[float]


def curves_figure(curves: Sequence[Curve], colors: Mapping[str, str]) -> str:
    """Training loss (left) and validation Dice (right) against the step, one line per run."""
    if not curves:
        raise ValueError("Expected at least one run")
    fig, (left, right) = _figure(9.0, 3.4, ncols=2)
    for curve in curves:
        color = colors.get(curve.cell)
        left.plot(curve.steps, curve.loss, color=color, linewidth=1.0, alpha=0.8)
        if len(curve.val_steps):
            right.plot(curve.val_steps, curve.val_dice, color=color, marker="o", markersize=3)
    left.set_xlabel("step")
    left.set_ylabel("training loss")
    right.set_xlabel("step")
    right.set_ylabel("validation Dice")
    cells = list(dict.fromkeys(c.cell for c in curves))
    handles = [Line2D([], [], color=colors.get(c), label=c) for c in cells]
    right.legend(handles=handles, fontsize=8, loc="lower right")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    return to_png_base64(fig)


def imbalance_figure(
    fractions: Mapping[str, Sequence[float]], sizes: Mapping[str, Sequence[float]]
) -> str:
    """Histograms of per-case foreground fractions and of lesion sizes, per class (log x)."""
    if not any(len(_finite(v)) for v in fractions.values()):
        raise ValueError("Expected at least one foreground fraction")
    fig, (left, right) = _figure(9.0, 3.4, ncols=2)
    for name, values in fractions.items():
        positive = _finite(values)
        positive = positive[positive > 0]
        if positive.size:
            edges = np.logspace(np.log10(positive.min()) - 0.1, np.log10(positive.max()) + 0.1, 16)
            left.hist(positive, bins=edges, alpha=0.6, label=name)
    left.set_xscale("log")
    left.xaxis.set_minor_formatter(NullFormatter())  # minor labels overlap on short ranges
    left.set_xlabel("foreground fraction of the case (log)")
    left.set_ylabel("cases")
    for name, values in sizes.items():
        positive = _finite(values)
        positive = positive[positive > 0]
        if positive.size:
            edges = np.logspace(0, np.log10(positive.max()) + 0.1, 20)
            right.hist(positive, bins=edges, alpha=0.6, label=name)
    right.set_xscale("log")
    right.set_xlabel("lesion size (voxels, log)")
    right.set_ylabel("lesions")
    for ax in (left, right):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    return to_png_base64(fig)


def landscape_1d_figure(
    curves: Sequence[tuple[str, str, Sequence[float], Sequence[float | None]]],
) -> str:
    """1-D loss curves ``(label, color, alphas, losses)`` overlaid; ``None`` losses skipped."""
    if not curves:
        raise ValueError("Expected at least one landscape")
    fig, (ax,) = _figure(6.0, 3.6)
    for label, color, alphas, losses in curves:
        y = np.array([math.nan if v is None else float(v) for v in losses])
        ax.plot(alphas, y, color=color, label=label, linewidth=1.2)
    ax.set_xlabel("step along a filter-normalised direction")
    ax.set_ylabel("loss")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return to_png_base64(fig)


def landscape_2d_figure(
    panels: Sequence[
        tuple[str, Sequence[float], Sequence[float], Sequence[Sequence[float | None]]]
    ],
) -> str:
    """Contours of ``loss_2d[j][i]`` at ``(alphas[i], betas[j])``, one panel per run."""
    if not panels:
        raise ValueError("Expected at least one 2-D landscape")
    fig, axes = _figure(4.2 * len(panels), 3.8, ncols=len(panels))
    for ax, (title, alphas, betas, grid) in zip(axes, panels, strict=True):
        z = np.array([[math.nan if v is None else float(v) for v in row] for row in grid])
        filled = ax.contourf(alphas, betas, np.ma.masked_invalid(z), levels=20, cmap="viridis")
        ax.contour(
            alphas, betas, np.ma.masked_invalid(z), levels=10, colors="white", linewidths=0.5
        )
        fig.colorbar(filled, ax=ax, shrink=0.85, label="loss")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("direction 1")
        ax.set_ylabel("direction 2")
    return to_png_base64(fig)


@dataclass
class SlicePanel:
    """One axial slice: ``image`` float ``(X, Y)``, ``reference``/``prediction`` bool ``(X, Y)``."""

    title: str
    image: np.ndarray
    reference: np.ndarray
    prediction: np.ndarray
    aspect: float = 1.0  # voxel height / width on screen (spacing of axis 1 / axis 0)


def _outline(ax, mask: np.ndarray, color: str, width: float, style: str) -> None:
    # contour() warns on a constant field: draw only when the slice has both values
    if mask.any() and not mask.all():
        ax.contour(
            mask.T.astype(np.float32),
            levels=[0.5],
            colors=color,
            linewidths=width,
            linestyles=style,
        )


def slices_figure(panels: Sequence[SlicePanel]) -> str:
    """Image in grey, reference outline (green, solid) and prediction (red, dashed), per panel."""
    if not panels:
        raise ValueError("Expected at least one slice")
    fig, axes = _figure(4.0 * len(panels), 4.2, ncols=len(panels))
    for ax, panel in zip(axes, panels, strict=True):
        image = panel.image.astype(np.float32)
        lo, hi = np.percentile(image, [1, 99]) if image.size else (0.0, 1.0)
        ax.imshow(
            image.T,
            cmap="gray",
            origin="lower",
            vmin=lo,
            vmax=max(hi, lo + 1e-6),
            aspect=panel.aspect,
        )
        # reference wide and solid, prediction thin and dashed: both visible where they agree
        _outline(ax, panel.reference, REFERENCE_COLOR, 2.4, "solid")
        _outline(ax, panel.prediction, PREDICTION_COLOR, 1.2, "dashed")
        ax.set_title(panel.title, fontsize=9)
        ax.set_axis_off()
    handles = [
        Line2D([], [], color=REFERENCE_COLOR, linewidth=2.4, label="reference"),
        Line2D([], [], color=PREDICTION_COLOR, linewidth=1.2, linestyle="--", label="prediction"),
    ]
    axes[-1].legend(handles=handles, fontsize=8, loc="lower right")
    return to_png_base64(fig)
