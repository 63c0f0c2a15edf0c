"""Per-case reading for the report: lesion detection by size and example slices.

Predictions are the label maps ``segbalance evaluate`` writes to
``<run>/eval/<dataset_name>/<case>.nii.gz`` (source shape and affine); images and
references come from the dataset folder via :func:`segbalance.data.open_dataset` and
:func:`segbalance.data.read_case`. The work is capped (:data:`MAX_DETECTION_CASES`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segbalance.report.inputs import CompareFolder, Run, Unavailable

#: Cases (sorted by name) whose predictions enter the detection-by-size figure.
MAX_DETECTION_CASES = 50


def prediction_path(run: Run, dataset_name: str, case: str) -> Path:
    """``<run>/eval/<dataset_name>/<case>.nii.gz`` (``.nii`` when only that exists)."""
    folder = run.path / "eval" / dataset_name
    path = folder / f"{case}.nii.gz"
    return (
        path if path.is_file() or not (folder / f"{case}.nii").is_file() else folder / f"{case}.nii"
    )


def read_prediction(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """The label map at ``path`` as integers, or None when missing, unreadable or mis-shaped."""
    import nibabel as nib

    if not path.is_file():
        return None
    try:
        data = np.asanyarray(nib.load(str(path)).dataobj)
    except Exception:  # a corrupt file is skipped and counted, never fatal to the report
        return None
    data = data.reshape(data.shape[:3]) if data.ndim == 4 and data.shape[3] == 1 else data
    if tuple(data.shape) != tuple(shape):
        return None
    return np.rint(data).astype(np.int64)


def _open(folder: CompareFolder) -> Any:
    from segbalance.data import open_dataset
    from segbalance.errors import InputError

    path = folder.dataset_path()
    try:
        return open_dataset(path)
    except InputError as err:
        raise Unavailable(f"the dataset could not be opened ({err.line()})") from None


def _cases(folder: CompareFolder) -> list[str]:
    return sorted({row["case"] for row in folder.rows})


def _eval_name(folder: CompareFolder, layout: Any) -> str:
    name = folder.compare.get("dataset_name")
    return str(name) if name else str(layout.name)


@dataclass
class Detection:
    """Lesions per method pooled over cases, seeds and foreground classes; each lesion dict
    of :func:`segbalance.evaluate.lesion_metrics` plus ``key = (case, seed, class, index)``,
    which pairs the same reference lesion across methods."""

    lesions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    n_predictions: dict[str, int] = field(default_factory=dict)
    n_cases: int = 0
    n_cases_total: int = 0
    skipped: int = 0  # prediction files unreadable or of the wrong shape
    unreadable_cases: list[str] = field(default_factory=list)


def detection_from_predictions(
    folder: CompareFolder, max_cases: int = MAX_DETECTION_CASES
) -> Detection:
    """GT lesions with a ``detected`` flag per method, from the saved predictions.

    Reads each reference once (case-major) and every run's prediction of that case;
    :func:`segbalance.evaluate.lesion_metrics` per foreground class. Raises
    :class:`Unavailable` when no prediction is found at all.
    """
    from segbalance.data import read_case
    from segbalance.errors import InputError
    from segbalance.evaluate import lesion_metrics

    layout = _open(folder)
    eval_name = _eval_name(folder, layout)
    names = {c.name for c in layout.cases}
    all_cases = [c for c in _cases(folder) if c in names]
    result = Detection(n_cases_total=len(_cases(folder)))
    chosen = all_cases[:max_cases]
    classes = sorted(layout.foreground_classes)
    for case in chosen:
        try:
            ref_case = read_case(layout, layout.case(case), images=False)
        except InputError:  # a broken reference costs its case, not the figure
            result.unreadable_cases.append(case)
            continue
        for cell in folder.cells:
            for run in folder.done_runs(cell):
                path = prediction_path(run, eval_name, case)
                if not path.exists():
                    continue
                pred = read_prediction(path, ref_case.label.shape)
                if pred is None:
                    result.skipped += 1
                    continue
                found = result.lesions.setdefault(cell, [])
                for cls in classes:
                    metrics = lesion_metrics(pred == cls, ref_case.label == cls, ref_case.spacing)
                    # the key pairs a lesion across methods: same case, seed, class, component
                    found.extend(
                        {**lesion, "key": (case, run.seed, cls, index)}
                        for index, lesion in enumerate(metrics["lesions"])
                    )
                result.n_predictions[cell] = result.n_predictions.get(cell, 0) + 1
        result.n_cases += 1
    if not result.n_predictions:
        raise Unavailable(
            f"no saved predictions under <run>/eval/{eval_name}/ for the dataset's cases"
        )
    return result


def detection_from_counts(rows: Sequence[dict[str, str]]) -> dict[str, dict[str, float]]:
    """Overall lesion detection per cell from ``results.csv``: ``{cell: {tp, fn, fp, rate}}``."""
    totals: dict[str, dict[str, float]] = {}
    for row in rows:
        entry = totals.setdefault(row["cell"], {"tp": 0.0, "fn": 0.0, "fp": 0.0})
        for key in ("tp", "fn", "fp"):
            text = (row.get(f"lesion_{key}") or "").strip()
            try:
                value = float(text) if text else math.nan
            except ValueError:
                value = math.nan
            if math.isfinite(value):
                entry[key] += value
    for entry in totals.values():
        total = entry["tp"] + entry["fn"]
        entry["rate"] = entry["tp"] / total if total else math.nan
    if not any(e["tp"] + e["fn"] + e["fp"] for e in totals.values()):
        raise Unavailable("results.csv has no lesion_tp / lesion_fn counts")
    return totals


@dataclass
class ExampleSlice:
    """An axial slice (third array axis) of one case for one run's prediction."""

    case: str
    run: Run
    z: int
    image: np.ndarray
    reference: np.ndarray
    prediction: np.ndarray
    note: str
    aspect: float = 1.0


def largest_lesion_slice(label: np.ndarray) -> tuple[int, str]:
    """Index on the third axis with most voxels of the largest reference lesion.

    Lesions are 26-connected components of ``label > 0``; without any, the middle slice.
    """
    from segbalance.stats import label_components

    components, n = label_components(label > 0)
    if n == 0:
        return label.shape[2] // 2, "no reference lesion: middle slice"
    sizes = np.bincount(components.reshape(-1), minlength=n + 1)
    sizes[0] = 0
    largest = int(np.argmax(sizes))
    per_slice = (components == largest).sum(axis=(0, 1))
    # ties (a box-shaped lesion): the middle of the tied slices, i.e. the lesion's centre
    tied = np.flatnonzero(per_slice == per_slice.max())
    z = int(tied[len(tied) // 2])
    return z, f"largest reference lesion ({int(sizes[largest])} voxels)"


def example_slice(folder: CompareFolder, cell: str, case: str) -> ExampleSlice:
    """Image channel 0, reference and prediction (foreground = any class > 0) of ``case``."""
    from segbalance.data import read_case
    from segbalance.errors import InputError

    layout = _open(folder)
    eval_name = _eval_name(folder, layout)
    try:
        raw = read_case(layout, layout.case(case), images=True)
    except InputError as err:
        raise Unavailable(f"case {case} could not be read ({err.line()})") from None
    for run in folder.done_runs(cell):
        pred = read_prediction(prediction_path(run, eval_name, case), raw.label.shape)
        if pred is None:
            continue
        z, note = largest_lesion_slice(raw.label)
        if raw.image is None:  # read_case(images=True) always sets it; keeps types honest
            raise Unavailable(f"case {case} has no image")
        return ExampleSlice(
            case=case,
            run=run,
            z=z,
            image=raw.image[0][:, :, z],
            reference=raw.label[:, :, z] > 0,
            prediction=pred[:, :, z] > 0,
            note=note,
            aspect=raw.spacing[1] / raw.spacing[0],
        )
    raise Unavailable(f"no saved prediction of case {case} for {cell}")
