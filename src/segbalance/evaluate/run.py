"""``segbalance evaluate RUN_DIR``: predictions and per-case metrics of a trained run.

Predictions are mapped back to each source label's grid (reorientation and resampling
undone) and written as NIfTI with the source affine; metrics are computed there, with
the source spacing, so they compare with any other tool's.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from segbalance.atomic import atomic_write_bytes, atomic_write_text
from segbalance.errors import InputError
from segbalance.evaluate.case import CASE_METRIC_KEYS

#: ``per_case.csv`` columns: DESIGN's, then the reference/prediction sizes
PER_CASE_COLUMNS = (
    "case",
    *CASE_METRIC_KEYS[:1],
    "class_name",
    *CASE_METRIC_KEYS[1:],
    "ref_voxels",
    "pred_voxels",
)
#: metrics averaged only over cases whose reference is not empty (METHODS §10)
NONEMPTY_METRICS = ("dice", "iou", "precision", "recall", "hd95", "assd", "nsd")


def evaluate_run(
    run_dir: str | Path,
    *,
    dataset: str | Path | None = None,
    checkpoint: str = "checkpoint_best.pt",
    model: Any = None,
    data: Any = None,
    info: Any = None,
    cfg: Any = None,
    device: Any = None,
    extra: dict[str, Any] | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Evaluate a run on its validation cases (or on every case of ``dataset``).

    Writes ``RUN_DIR/eval/<dataset name>/``: ``<case>.nii.gz`` predictions, ``per_case.csv``
    (one row per case and class, :data:`PER_CASE_COLUMNS`) and ``summary.json``
    (``dataset, checkpoint, n_cases, mean: {class: {metric: value}}``). Without
    ``dataset``, the same two tables also go to the run folder itself (the run's result).

    The trainer passes its live ``model``/``data``/``info``/``cfg``; the CLI passes only
    ``run_dir`` (and ``dataset``) and the run is rebuilt from ``config.yaml`` and the
    checkpoint. Returns the summary dict.
    """
    import torch

    from segbalance.data import open_dataset, read_case
    from segbalance.data.nifti import nifti_gz_bytes
    from segbalance.data.preprocess import to_original_space
    from segbalance.data.reader import affine_spacing
    from segbalance.evaluate.case import case_metrics
    from segbalance.evaluate.inference import logits_to_labels, predict_logits

    run = Path(run_dir)
    ckpt_path = run / checkpoint
    if model is None:
        model, data, info, cfg, device, ckpt_path = _rebuild(run, checkpoint, dataset)
    elif (run / checkpoint).is_file():
        from segbalance.train.checkpoint import evaluated_weights, load_checkpoint

        model.load_state_dict(evaluated_weights(load_checkpoint(ckpt_path)))
    if dataset is not None:
        layout = open_dataset(dataset)
        cases = [c.name for c in layout.cases]
    else:
        layout = open_dataset(info.path)
        cases = list(info.split["val"])
    out = run / "eval" / layout.name
    classes = sorted(info.classes)
    rows: list[dict[str, Any]] = []
    for index, name in enumerate(cases):
        case = data[name]
        logits = predict_logits(
            model,
            np.asarray(case.image),
            info.patch_size,
            overlap=cfg.validation.overlap,
            mode=cfg.validation.mode,
            sw_batch_size=cfg.validation.sw_batch_size,
            device=device or torch.device("cpu"),
            label=np.asarray(case.label),
            mirror_axes=cfg.validation.mirror_axes,
        )
        pred, affine = to_original_space(logits_to_labels(logits, classes), case.meta)
        atomic_write_bytes(out / f"{name}.nii.gz", nifti_gz_bytes(pred, affine))
        ref = read_case(layout, layout.case(name), images=False).label
        if ref.shape != pred.shape:
            raise InputError(name, f"prediction shape {pred.shape} vs label {ref.shape}", "equal")
        for row in case_metrics(pred, ref, classes, spacing=affine_spacing(affine)):
            c = int(row["class"])
            row.update(
                case=name,
                class_name=info.classes[c],
                ref_voxels=int((ref == c).sum()),
                pred_voxels=int((pred == c).sum()),
            )
            rows.append(row)
        if progress is not None:
            progress(index + 1, len(cases), name)
    summary = {
        "dataset": layout.name,
        "checkpoint": str(ckpt_path),
        "n_cases": len(cases),
        "mean": summarise(rows, classes),
        **(extra or {}),
    }
    table = per_case_csv(rows)
    atomic_write_text(out / "per_case.csv", table)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1, default=_json))
    if dataset is None:
        atomic_write_text(run / "per_case.csv", table)
        atomic_write_text(run / "summary.json", json.dumps(summary, indent=1, default=_json))
    return summary


def summarise(rows: list[dict[str, Any]], classes: list[int]) -> dict[str, dict[str, float]]:
    """Per class: mean of each metric (overlap/surface metrics over non-empty references)."""
    out: dict[str, dict[str, float]] = {}
    for c in classes:
        mine = [r for r in rows if int(r["class"]) == c]
        nonempty = [r for r in mine if r["ref_voxels"] > 0]
        means: dict[str, float] = {}
        for key in PER_CASE_COLUMNS[3:14]:
            pool = nonempty if key in NONEMPTY_METRICS else mine
            values = [float(r[key]) for r in pool if not math.isnan(float(r[key]))]
            means[key] = float(np.mean(values)) if values else math.nan
        empty = [r for r in mine if r["ref_voxels"] == 0]
        means["empty_reference_cases"] = len(empty)
        means["empty_reference_with_fp"] = sum(r["pred_voxels"] > 0 for r in empty)
        out[str(c)] = means
    return out


def per_case_csv(rows: list[dict[str, Any]]) -> str:
    """``per_case.csv`` text with :data:`PER_CASE_COLUMNS` (extra keys appended)."""
    extra = sorted({k for r in rows for k in r} - set(PER_CASE_COLUMNS))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*PER_CASE_COLUMNS, *extra], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(v) for k, v in row.items()})
    return buffer.getvalue()


def _fmt(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value


def _json(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _rebuild(run: Path, checkpoint: str, dataset: str | Path | None) -> tuple:
    """Model (weights from ``checkpoint``), data, info, config, device and the checkpoint
    file actually read (``checkpoint_last.pt`` when a run has no best checkpoint yet)."""
    import torch

    from segbalance.train.checkpoint import (
        checkpoint_to_score,
        evaluated_weights,
        load_checkpoint,
    )
    from segbalance.train.rundir import read_run_config
    from segbalance.train.setup import build_network, prepare_data

    if not (run / "config.yaml").is_file():
        raise InputError(str(run), "no config.yaml", "a run folder written by segbalance train")
    cfg = read_run_config(run)
    path = checkpoint_to_score(run, checkpoint)
    state = load_checkpoint(path)
    info, data = prepare_data(cfg.data, run)
    if dataset is not None:
        from segbalance.data import open_dataset
        from segbalance.data.cache import preprocess_dataset
        from segbalance.train.setup import preprocess_settings

        layout = open_dataset(dataset)
        if sorted(layout.foreground_classes) != sorted(info.classes):
            raise InputError(
                str(dataset),
                f"classes {sorted(layout.foreground_classes)} differ from the run's",
                f"classes {sorted(info.classes)}",
            )
        data = preprocess_dataset(layout, preprocess_settings(cfg.data))
    model, _ = build_network(cfg, info)
    model.load_state_dict(evaluated_weights(state))
    device = torch.device("cuda" if torch.cuda.is_available() and cfg.device != "cpu" else "cpu")
    model.to(device)
    return model, data, info, cfg, device, path
