"""Imbalance statistics of a dataset (``segbalance analyze``) and whole-dataset checks.

The returned dict is the ``analyze --json`` schema documented in ``docs/data.md``.
Everything is measured on the label files as stored on disk (no reorientation or
resampling): shapes and spacings are those of the files.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from segbalance.data.layout import DatasetLayout, open_dataset
from segbalance.data.reader import affine_spacing, read_case
from segbalance.errors import InputError
from segbalance.stats import (
    calf_select,
    component_sizes,
    excess_kurtosis,
    label_components,
    skewness,
)

SCHEMA_VERSION = 1
Progress = Callable[[int, int, str], None]

# Suggested patch: median canonical shape rounded up to a multiple of this (three
# stride-2 levels of the default U-Net), then shrunk until it fits the voxel budget.
PATCH_MULTIPLE = 8
PATCH_VOXEL_BUDGET = 128**3
# Below this median union foreground fraction, half of the patches are centred on
# foreground (inverse-weighting reference setup); otherwise nnU-Net's 1/3.
TINY_FOREGROUND = 0.01

BRANCH_TRANSFORMS = {
    "fisher": "Fisher z-transform atanh(p) (offset +8.4056)",
    "logit": "logit transform (offset +16.1181)",
    "arcsine": "arcsine-square-root transform (offset +1.5705)",
    "log10_bce": "BCE in base-10 logarithm (0.4343 x BCE)",
    "ln_bce": "BCE (natural logarithm)",
    "bce_dice": "BCE + Dice",
}


def check_dataset(path: str | Path, *, progress: Progress | None = None) -> list[InputError]:
    """Read every case fully and return all problems found (empty list = clean).

    Problems with the folder or ``dataset.json`` itself are returned as a single item.
    """
    problems: list[InputError] = []
    try:
        layout = open_dataset(path, report=problems.append)
    except InputError as err:
        return [*problems, err]
    for index, case in enumerate(layout.cases):
        try:
            read_case(layout, case, images=True)
        except InputError as err:
            problems.append(err)
        if progress is not None:
            progress(index + 1, len(layout.cases), case.name)
    return problems


def imbalance_stats(
    path: str | Path | DatasetLayout,
    *,
    cases: Iterable[str] | None = None,
    read_images: bool = True,
    progress: Progress | None = None,
) -> dict:
    """Per-case and dataset-level imbalance statistics with the CALF recommendation.

    Args:
        path: dataset folder (MSD or nnU-Net v2) or a parsed layout.
        cases: restrict to these case names (e.g. the training split).
        read_images: also read the images to validate them (NaN, corrupt data);
            labels and headers are always validated.
        progress: ``progress(done, total, case_name)`` after each case.

    Returns:
        the ``analyze --json`` dict: ``dataset, layout, n_cases, classes, cases,
        summary, prior, calf, suggested`` (+ ``schema_version``); see docs/data.md.

    Raises:
        InputError: the first bad file or case.
    """
    layout = path if isinstance(path, DatasetLayout) else open_dataset(path)
    selected = [layout.case(n) for n in cases] if cases is not None else list(layout.cases)
    if not selected:
        raise InputError(str(layout.root), "no case selected", "at least one case")
    fg = layout.foreground_classes
    per_case: list[dict] = []
    class_voxels = dict.fromkeys(layout.classes, 0)
    total_voxels = 0
    canonical_shapes = []
    union_fractions = []
    for index, case in enumerate(selected):
        raw = read_case(layout, case, images=read_images)
        label = raw.label
        spacing = affine_spacing(raw.affine)
        voxel_mm3 = float(np.prod(spacing))
        counts = np.bincount(label.ravel(), minlength=max(layout.classes) + 1)
        total_voxels += label.size
        for cls in layout.classes:
            class_voxels[cls] += int(counts[cls])
        entry: dict = {
            "case": case.name,
            "shape": [int(s) for s in label.shape],
            "spacing": list(spacing),
            "classes": {},
        }
        for cls in fg:
            components, n = label_components(label == cls)
            sizes = np.sort(component_sizes(components, n)[1:])[::-1]
            entry["classes"][str(cls)] = {
                "fraction": float(counts[cls]) / label.size,
                "voxels": int(counts[cls]),
                "lesions": int(n),
                "lesion_sizes_voxels": [int(s) for s in sizes],
                "lesion_sizes_mm3": [float(s) * voxel_mm3 for s in sizes],
            }
        union = float(label.size - counts[0]) / label.size
        entry["foreground_fraction"] = union
        union_fractions.append(union)
        canonical_shapes.append(_canonical_shape(raw.affine, label.shape))
        per_case.append(entry)
        if progress is not None:
            progress(index + 1, len(selected), case.name)
    summary = {
        str(c): _class_summary([e["classes"][str(c)] for e in per_case], n_vox=class_voxels[c])
        for c in fg
    }
    prior = {str(c): class_voxels[c] / total_voxels for c in layout.classes}
    return {
        "schema_version": SCHEMA_VERSION,
        "dataset": str(layout.root),
        "name": layout.name,
        "layout": layout.layout,
        "n_cases": len(per_case),
        "classes": {str(c): n for c, n in fg.items()},
        "channels": {str(c): n for c, n in layout.channels.items()},
        "cases": per_case,
        "summary": summary,
        "prior": prior,
        "calf": calf_recommendation(
            {c: [e["classes"][c]["fraction"] for e in per_case] for c in summary}
        ),
        "suggested": suggest_training(canonical_shapes, union_fractions),
    }


def _class_summary(entries: list[dict], n_vox: int) -> dict:
    fractions = np.array([e["fraction"] for e in entries], dtype=np.float64)
    sizes = np.array([s for e in entries for s in e["lesion_sizes_voxels"]], dtype=np.float64)
    lesions = np.array([e["lesions"] for e in entries], dtype=np.float64)
    pct = np.percentile(sizes, [10, 50, 90]) if sizes.size else [math.nan] * 3
    return {
        "mean_fraction": float(fractions.mean()),
        "median_fraction": float(np.median(fractions)),
        "min_fraction": float(fractions.min()),
        "max_fraction": float(fractions.max()),
        "std_fraction": float(fractions.std()),
        "skewness": _finite(skewness(fractions)),
        "excess_kurtosis": _finite(excess_kurtosis(fractions)),
        "voxels": int(n_vox),
        "empty_cases": int((fractions == 0).sum()),
        "lesions_total": int(lesions.sum()),
        "lesions_per_case_mean": float(lesions.mean()),
        "lesion_size_p10_voxels": _finite(float(pct[0])),
        "lesion_size_median_voxels": _finite(float(pct[1])),
        "lesion_size_p90_voxels": _finite(float(pct[2])),
        "lesions_under_10_voxels": int((sizes < 10).sum()),
    }


def calf_recommendation(fractions: dict[str, list[float]]) -> dict:
    """CALF branch per class from per-case fractions (METHODS §7, dataset-level mode).

    Returns:
        ``{"branch": {cls: name}, "path": {cls: text}, "transform": {cls: text},
        "skewness", "excess_kurtosis", "degenerate": {cls: bool}, "fractions",
        "loss": config snippet}``.
    """
    out: dict = {
        "branch": {},
        "path": {},
        "transform": {},
        "skewness": {},
        "excess_kurtosis": {},
        "degenerate": {},
        "fractions": {},
    }
    for cls, values in fractions.items():
        chosen = calf_select(values, warn=False)
        out["branch"][cls] = chosen["branch"]
        out["path"][cls] = chosen["path"]
        out["transform"][cls] = BRANCH_TRANSFORMS[chosen["branch"]]
        out["skewness"][cls] = _finite(chosen["skewness"])
        out["excess_kurtosis"][cls] = _finite(chosen["excess_kurtosis"])
        out["degenerate"][cls] = chosen["path"].startswith("degenerate")
        out["fractions"][cls] = [float(v) for v in values]
    branches = out["branch"]
    branch_option = next(iter(branches.values())) if len(branches) == 1 else dict(branches)
    out["loss"] = {"name": "calf", "options": {"branch": branch_option}}
    return out


def suggest_training(shapes: list[tuple[int, int, int]], union_fractions: list[float]) -> dict:
    """Patch size (canonical RAS axis order) and foreground-oversampling share."""
    median = np.median(np.array(shapes, dtype=np.float64), axis=0)
    patch = [int(PATCH_MULTIPLE * math.ceil(m / PATCH_MULTIPLE)) for m in median]
    while int(np.prod(patch)) > PATCH_VOXEL_BUDGET:
        axis = int(np.argmax(patch))
        patch[axis] -= PATCH_MULTIPLE
    median_fg = float(np.median(union_fractions))
    share = 0.5 if median_fg < TINY_FOREGROUND else round(1 / 3, 4)
    why = (
        f"median foreground fraction {median_fg:.4%} < {TINY_FOREGROUND:.0%}: half of the patches on foreground"
        if share == 0.5
        else f"median foreground fraction {median_fg:.4%}: nnU-Net's default 1/3"
    )
    return {
        "patch_size": patch,
        "patch_axes": "canonical (RAS) voxel order, as the loader sees the data",
        "median_shape": [float(m) for m in median],
        "oversample_foreground": share,
        "reason": why,
    }


def _canonical_shape(affine: np.ndarray, shape: tuple[int, ...]) -> tuple[int, int, int]:
    import nibabel as nib

    ornt = nib.orientations.io_orientation(affine)
    out = [0, 0, 0]
    for axis, (target, _) in enumerate(ornt):
        out[int(target)] = int(shape[axis])
    return tuple(out)  # type: ignore[return-value]


def _finite(value: float) -> float | None:
    """JSON has no NaN: undefined statistics become null."""
    return None if value is None or not math.isfinite(value) else float(value)
