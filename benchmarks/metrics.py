"""Metric speed vs MONAI / scipy references, same process, interleaved runs.

(1) HD95 + NSD of two 128^3 masks (ellipsoid blobs, perturbed prediction, anisotropic
    spacing): segbalance ``surface_metrics`` (one shared computation, also gives ASSD) vs
    MONAI ``compute_hausdorff_distance(percentile=95)`` + ``compute_surface_dice`` on CPU.
(2) Lesion-wise matching on a 128^3 volume with ~50 lesions: ``lesion_metrics`` vs a
    ``scipy.ndimage.label`` implementation (label both, loop over GT lesions).

Each repeat runs ours then the reference on the same inputs, so machine load hits both
alike; the table reports medians. Values are checked to agree before timing.

    python benchmarks/metrics.py [--size 128] [--repeats 15] [--out bench_results/metrics.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import monai
import numpy as np
import scipy
import torch
from monai.metrics import compute_hausdorff_distance, compute_surface_dice
from scipy import ndimage

from segbalance.evaluate import lesion_metrics, surface_metrics


def ellipsoids(shape: tuple[int, ...], centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Union of axis-aligned ellipsoids; each is drawn inside its own bounding box."""
    mask = np.zeros(shape, dtype=bool)
    for centre, radius in zip(centres, radii, strict=True):
        lo = np.maximum(np.floor(centre - radius), 0).astype(int)
        hi = np.minimum(np.ceil(centre + radius) + 1, shape).astype(int)
        grid = np.ogrid[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]
        inside = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radius, strict=True))
        mask[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] |= inside <= 1.0
    return mask


def blob_scene(size: int, n_blobs: int, radius: tuple[float, float], seed: int):
    """Reference blobs and a prediction with shifted centres and scaled radii."""
    rng = np.random.default_rng(seed)
    shape = (size,) * 3
    centres = rng.uniform(0.15 * size, 0.85 * size, size=(n_blobs, 3))
    radii = rng.uniform(*radius, size=(n_blobs, 3))
    ref = ellipsoids(shape, centres, radii)
    moved = centres + rng.normal(0.0, 1.0, size=centres.shape)
    pred = ellipsoids(shape, moved, radii * rng.uniform(0.85, 1.15, size=radii.shape))
    return pred, ref


def lesion_scene(size: int, n_lesions: int, seed: int):
    """~n small lesions; the prediction finds ~70 % of them and adds ~10 stray components."""
    rng = np.random.default_rng(seed)
    shape = (size,) * 3
    centres = rng.uniform(4, size - 4, size=(n_lesions, 3))
    radii = rng.uniform(1.0, 4.0, size=(n_lesions, 3))
    ref = ellipsoids(shape, centres, radii)
    found = rng.random(n_lesions) < 0.7
    stray = rng.uniform(4, size - 4, size=(10, 3))
    pred = ellipsoids(
        shape,
        np.vstack([centres[found] + rng.normal(0, 0.7, (found.sum(), 3)), stray]),
        np.vstack([radii[found], rng.uniform(1.0, 2.5, size=(10, 3))]),
    )
    return pred, ref


def monai_hd95_nsd(pred: np.ndarray, ref: np.ndarray, spacing, tolerance: float):
    yp = torch.from_numpy(pred)[None, None].float()
    yt = torch.from_numpy(ref)[None, None].float()

    def run() -> tuple[float, float]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hd = compute_hausdorff_distance(
                yp, yt, include_background=True, percentile=95, spacing=list(spacing)
            )
            nsd = compute_surface_dice(
                yp, yt, [tolerance], include_background=True, spacing=list(spacing)
            )
        return hd.item(), nsd.item()

    return run


def scipy_lesion_matching(pred: np.ndarray, ref: np.ndarray) -> tuple[int, int, int]:
    """Reference: scipy.ndimage.label both (26-connectivity), loop over GT lesions."""
    structure = np.ones((3, 3, 3), dtype=bool)
    gt_labels, n_gt = ndimage.label(ref, structure=structure)
    pred_labels, n_pred = ndimage.label(pred, structure=structure)
    tp, touched = 0, set()
    for lesion in range(1, n_gt + 1):
        hits = np.unique(pred_labels[gt_labels == lesion])
        hits = hits[hits != 0]
        tp += int(hits.size > 0)
        touched.update(hits.tolist())
    return tp, n_pred - len(touched), n_gt - tp


def time_pair(ours: Callable[[], Any], ref: Callable[[], Any], repeats: int) -> dict[str, float]:
    for _ in range(2):  # warm-up (imports, caches)
        ours()
        ref()
    t_ours, t_ref = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        ours()
        t_ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        ref()
        t_ref.append(time.perf_counter() - start)
    ours_ms = statistics.median(t_ours) * 1e3
    ref_ms = statistics.median(t_ref) * 1e3
    return {"ours_ms": ours_ms, "ref_ms": ref_ms, "speedup": ref_ms / ours_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", type=Path, default=Path("bench_results/metrics.json"))
    args = parser.parse_args()
    # One torch thread: our code is single-threaded, and on a shared 2-core machine extra
    # torch threads only add contention noise to MONAI's timings.
    torch.set_num_threads(1)
    spacing, tolerance = (0.8, 0.8, 1.5), 2.0
    results: dict[str, Any] = {
        "size": args.size,
        "repeats": args.repeats,
        "spacing_mm": spacing,
        "nsd_tolerance_mm": tolerance,
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "torch": torch.__version__,
            "monai": monai.__version__,
        },
        "rows": [],
    }
    scenes = {
        "5 ellipsoid blobs, r 4-14 vox": blob_scene(args.size, 5, (4.0, 14.0), seed=0),
        "20 small lesions, r 2-5 vox": blob_scene(args.size, 20, (2.0, 5.0), seed=1),
    }
    for name, (pred, ref) in scenes.items():
        ours = surface_metrics(pred, ref, spacing, tolerance)
        monai_run = monai_hd95_nsd(pred, ref, spacing, tolerance)
        hd_ref, nsd_ref = monai_run()
        assert np.isclose(ours["hd95"], hd_ref, rtol=1e-6), (ours, hd_ref)
        assert np.isclose(ours["nsd"], nsd_ref, rtol=1e-6), (ours, nsd_ref)
        timing = time_pair(
            lambda p=pred, r=ref: surface_metrics(p, r, spacing, tolerance), monai_run, args.repeats
        )
        results["rows"].append(
            {
                "task": f"HD95+NSD (+ASSD), {name}",
                "reference": "MONAI compute_hausdorff_distance(percentile=95) + compute_surface_dice",
                "fg_voxels": int(ref.sum()),
                **timing,
            }
        )

    pred, ref = lesion_scene(args.size, 50, seed=2)
    ours_lesions = lesion_metrics(pred, ref)
    expected = scipy_lesion_matching(pred, ref)
    got = (ours_lesions["lesion_tp"], ours_lesions["lesion_fp"], ours_lesions["lesion_fn"])
    assert got == expected, (got, expected)
    timing = time_pair(
        lambda: lesion_metrics(pred, ref), lambda: scipy_lesion_matching(pred, ref), args.repeats
    )
    results["rows"].append(
        {
            "task": f"lesion matching, {ours_lesions['n_gt_lesions']} GT / {ours_lesions['n_pred_lesions']} predicted lesions",
            "reference": "scipy.ndimage.label both + loop over GT lesions",
            "fg_voxels": int(ref.sum()),
            **timing,
        }
    )

    print(f"{'task':<62} {'ours ms':>9} {'ref ms':>9} {'speedup':>8}")
    for row in results["rows"]:
        print(
            f"{row['task']:<62} {row['ours_ms']:>9.1f} {row['ref_ms']:>9.1f} {row['speedup']:>7.1f}x"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
