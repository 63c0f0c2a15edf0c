"""Colours and line styles of the methods in every figure (report and sweep plot).

Twenty distinct colours (matplotlib's tab10, then ten darker tones of tab20b/tab20c), so a
grid of up to 20 methods never shows two methods in one colour; beyond that the marker
and line style still tell them apart. Black is kept for the baseline.
"""

from __future__ import annotations

METHOD_COLORS: tuple[str, ...] = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#393b79",
    "#637939",
    "#8c6d31",
    "#843c39",
    "#7b4173",
    "#3182bd",
    "#e6550d",
    "#31a354",
    "#756bb1",
    "#636363",
)
MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "P", "X")
BASELINE_COLOR = "#000000"


def method_color(index: int) -> str:
    """The colour of the ``index``-th method (0-based, in grid order)."""
    return METHOD_COLORS[index % len(METHOD_COLORS)]


def method_style(index: int) -> tuple[str, str, str]:
    """``(color, marker, linestyle)`` of the ``index``-th method: distinct for every index
    below 140 (20 colours x 7 markers), dashed from the 21st method on."""
    color = method_color(index)
    marker = MARKERS[index % len(MARKERS)]
    linestyle = "-" if index < len(METHOD_COLORS) else "--"
    return color, marker, linestyle
