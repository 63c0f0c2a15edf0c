"""A tiny synthetic compare folder, written file by file as ``segbalance compare`` does.

Dataset (MSD layout, 5 cases of 20x20x10 plus one empty case): every lesion case has a
1-voxel lesion, a 3x3x3 lesion (27 voxels) and, in even cases, a 5x5x5 lesion (125).
Cells: ``dice_adamw`` (baseline, plain) misses every 1-voxel lesion, and with seed 1 also
the 27-voxel lesion of case_1; ``dice_sam`` (SAM) finds every lesion and adds one 2x2x2
false positive per case. So the detection rates per size bin are known by construction.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np

from segbalance.evaluate.run import PER_CASE_COLUMNS

SHAPE = (20, 20, 10)
AFFINE = np.diag([1.5, 1.5, 3.0, 1.0])
LESION_CASES = [f"case_{i}" for i in range(5)]
EMPTY_CASE = "case_empty"
CELLS = {
    "dice_adamw": {"loss": "dice", "optimizer": "adamw", "sam": "none"},
    "dice_sam": {"loss": "dice", "optimizer": "adamw", "sam": "sam"},
}
SEEDS = (0, 1)
COLUMNS = [
    *PER_CASE_COLUMNS,
    "cell",
    "loss",
    "optimizer",
    "seed",
    "run_dir",
]
#: z index of the 5x5x5 lesion of case i (even i): the examples slice goes through it
BIG_LESION_Z = {0: 3, 2: 4, 4: 5}


def lesion_boxes(index: int) -> list[tuple[slice, slice, slice]]:
    """Boxes of the lesions of case ``index``: 1 voxel, 27 voxels, and 125 when even."""
    boxes = [
        (slice(2, 3), slice(2, 3), slice(1, 2)),
        (slice(6 + index % 3, 9 + index % 3), slice(12, 15), slice(5, 8)),
    ]
    if index % 2 == 0:
        z = BIG_LESION_Z[index]
        boxes.append((slice(12, 17), slice(3, 8), slice(z - 2, z + 3)))
    return boxes


def reference(index: int | None) -> np.ndarray:
    label = np.zeros(SHAPE, dtype=np.uint8)
    for box in lesion_boxes(index) if index is not None else []:
        label[box] = 1
    return label


def prediction(cell: str, seed: int, index: int | None) -> np.ndarray:
    pred = np.zeros(SHAPE, dtype=np.uint8)
    boxes = lesion_boxes(index) if index is not None else []
    if cell == "dice_adamw":
        for k, box in enumerate(boxes):
            if k == 0 or (k == 1 and seed == 1 and index == 1):
                continue  # missed lesions
            pred[box] = 1
    else:
        for box in boxes:
            pred[box] = 1
        pred[17:19, 16:18, 7:9] = 1  # one false positive
    return pred


def save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, AFFINE), str(path))


def write_dataset(root: Path) -> Path:
    rng = np.random.default_rng(0)
    training = []
    for name, index in [*((c, i) for i, c in enumerate(LESION_CASES)), (EMPTY_CASE, None)]:
        label = reference(index)
        image = (rng.normal(100, 10, SHAPE) + 80 * label).astype(np.float32)
        save(root / "imagesTr" / f"{name}.nii.gz", image)
        save(root / "labelsTr" / f"{name}.nii.gz", label)
        training.append(
            {"image": f"./imagesTr/{name}.nii.gz", "label": f"./labelsTr/{name}.nii.gz"}
        )
    meta = {
        "name": "tiny",
        "modality": {"0": "MRI"},
        "labels": {"0": "background", "1": "lesion"},
        "numTraining": len(training),
        "training": training,
    }
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def write_train_log(path: Path, offset: float) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epoch", "step", "seconds", "lr", "loss", "val_dice", "val_dice_1"])
        for step in range(1, 9):
            val = f"{0.3 + 0.05 * step + offset:.4f}" if step % 4 == 0 else ""
            loss = 1.0 / step + offset
            writer.writerow([step // 4, step, step * 0.5, 1e-3, f"{loss:.4f}", val, val])


def landscape(sharpness: float, curvature: float) -> dict:
    alphas = np.linspace(-1.0, 1.0, 5)
    grid = [[float(curvature * (a * a + b * b) + 0.2) for a in alphas] for b in alphas]
    return {
        "alphas": alphas.tolist(),
        "loss_1d": [float(curvature * a * a + 0.2) for a in alphas],
        "betas": alphas.tolist(),
        "loss_2d": grid,
        "seed": 0,
        "span": 1.0,
        "steps": 5,
        "normalization": "filter",
        "sharpness": sharpness,
        "rho": 0.05,
    }


def write_compare_folder(root: Path, dataset: Path) -> Path:
    """The whole compare folder; returns ``root``."""
    from segbalance.data import imbalance_stats
    from segbalance.evaluate import case_metrics
    from segbalance.experiments.stats import all_metric_stats, compare_methods

    root.mkdir(parents=True, exist_ok=True)
    rows = []
    cells_meta = []
    costs = {}
    for cell, info in CELLS.items():
        run_dirs = []
        for seed in SEEDS:
            run_rel = f"runs/{cell}-seed{seed}"
            run = root / run_rel
            run_dirs.append(run_rel)
            eval_dir = run / "eval" / "tiny"
            for name, index in [*((c, i) for i, c in enumerate(LESION_CASES)), (EMPTY_CASE, None)]:
                pred, ref = prediction(cell, seed, index), reference(index)
                save(eval_dir / f"{name}.nii.gz", pred)
                for row in case_metrics(pred, ref, [1], spacing=(1.5, 1.5, 3.0)):
                    row.update(
                        case=name,
                        class_name="lesion",
                        ref_voxels=int(ref.sum()),
                        pred_voxels=int(pred.sum()),
                        cell=cell,
                        loss=info["loss"],
                        optimizer=info["optimizer"],
                        seed=seed,
                        run_dir=run_rel,
                    )
                    rows.append(row)
            write_train_log(run / "train_log.csv", 0.1 * seed + (0.05 if cell == "dice_sam" else 0))
            summary = {
                "dataset": str(dataset),
                "checkpoint": "checkpoint_best.pt",
                "n_cases": 6,
                "mean": {"1": {"dice": 0.8}},
                "train_seconds": 30.0 + seed,
                "peak_rss_mb": 500.0,
            }
            (run / "summary.json").write_text(json.dumps(summary))
            if seed == 0:
                is_sam = info["sam"] != "none"
                data = landscape(0.01 if is_sam else 0.05, 0.5 if is_sam else 2.0)
                (run / "landscape.json").write_text(json.dumps(data))
        costs[cell] = {"train_seconds": 30.5, "peak_rss_mb": 500.0}
        cells_meta.append(
            {
                "name": cell,
                **info,
                "seeds": list(SEEDS),
                "run_dirs": run_dirs,
                "status": ["done", "done"],
            }
        )
    with (root / "results.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({k: row[k] for k in COLUMNS} for row in rows)
    with (root / "results.csv").open(newline="") as handle:
        text_rows = list(csv.DictReader(handle))
    stats = compare_methods(text_rows, baseline="dice_adamw", B=200, costs=costs)
    stats["by_metric"] = all_metric_stats(
        text_rows, "dice_adamw", metrics=("dice", "hd95", "lesion_f1"), B=200, costs=costs
    )
    (root / "stats.json").write_text(json.dumps(stats, indent=1))
    (root / "imbalance.json").write_text(json.dumps(imbalance_stats(dataset)))
    compare = {
        "dataset": str(dataset.resolve()),
        "dataset_name": "tiny",
        "classes": {"1": "lesion"},
        "baseline": "dice_adamw",
        "budget": {"steps": 8},
        "cells": cells_meta,
    }
    (root / "compare.json").write_text(json.dumps(compare, indent=1))
    return root
