"""Training-loader throughput vs a MONAI CacheDataset pipeline, and vs the network step.

Same process, same data (hippocampus, MSD), same patch (40x56x40), batch 4, same
augmentations with the same probabilities and ranges, one-third foreground patches:

- segbalance: ``preprocess_dataset`` (cached .npy memory maps) + ``PatchLoader``
  (with and without per-patch inverse lesion weights);
- MONAI: ``CacheDataset`` caching LoadImaged, EnsureChannelFirstd, Orientationd(RAS),
  NormalizeIntensityd, SpatialPadd and FgBgToIndicesd (so the crop does not rescan the
  label), then RandCropByPosNegLabeld(pos=1, neg=2), RandAffined, RandFlipd x3,
  RandRotate90d, RandScaleIntensityd, RandShiftIntensityd, RandAdjustContrastd,
  RandGaussianNoised, and a DataLoader(batch_size=4, num_workers=0).

Rounds alternate ours / MONAI so machine load hits both alike; the table reports
medians of patches per second. The default network (MONAI UNet 16-32-64-128, strides
2-2-2, 2 residual units; Adam; DiceCE) is timed for forward+backward+step at batch 4.

    python benchmarks/loader.py [--data ../shared/data/hippocampus] [--cases 60]
        [--batches 15] [--repeats 5] [--out bench_results/loader.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import monai
import numpy as np
import torch

PATCH = (40, 56, 40)
warnings.filterwarnings("ignore", category=FutureWarning, module="monai")
BATCH = 4
ROTATE = math.radians(15.0)


def segbalance_loaders(root: Path, names: list[str], seed: int):
    from segbalance.data import AugmentSettings, PatchLoader, open_dataset, preprocess_dataset

    layout = open_dataset(root)
    start = time.perf_counter()
    data = preprocess_dataset(layout, cases=names)
    prep_s = time.perf_counter() - start
    settings = AugmentSettings(rot90_planes=((0, 2),))  # defaults = the MONAI chain below
    common = dict(
        patch_size=PATCH, batch_size=BATCH, augment=settings, seed=seed, batches_per_epoch=10**9
    )
    plain = PatchLoader(data, **common)
    weighted = PatchLoader(data, with_weights=True, **common)
    return plain, weighted, prep_s


def monai_loader(root: Path, names: list[str], seed: int):
    from monai import transforms as T
    from monai.data import CacheDataset, DataLoader

    files = [
        {
            "image": str(root / "imagesTr" / f"{n}.nii.gz"),
            "label": str(root / "labelsTr" / f"{n}.nii.gz"),
        }
        for n in names
    ]
    keys = ["image", "label"]
    transform = T.Compose(
        [
            T.LoadImaged(keys=keys),
            T.EnsureChannelFirstd(keys=keys),
            T.Orientationd(keys=keys, axcodes="RAS"),
            T.NormalizeIntensityd(keys="image"),
            T.SpatialPadd(keys=keys, spatial_size=PATCH),
            T.FgBgToIndicesd(keys="label", fg_postfix="_fg", bg_postfix="_bg"),
            T.RandCropByPosNegLabeld(
                keys=keys,
                label_key="label",
                spatial_size=PATCH,
                pos=1,
                neg=2,
                num_samples=1,
                fg_indices_key="label_fg",
                bg_indices_key="label_bg",
            ),
            T.RandAffined(
                keys=keys,
                prob=0.2,
                rotate_range=(ROTATE, ROTATE, ROTATE),
                scale_range=(0.1, 0.1, 0.1),
                mode=("bilinear", "nearest"),
                padding_mode="zeros",
            ),
            T.RandFlipd(keys=keys, prob=0.5, spatial_axis=0),
            T.RandFlipd(keys=keys, prob=0.5, spatial_axis=1),
            T.RandFlipd(keys=keys, prob=0.5, spatial_axis=2),
            T.RandRotate90d(keys=keys, prob=0.5, spatial_axes=(0, 2)),
            T.RandScaleIntensityd(keys="image", factors=0.1, prob=0.15),
            T.RandShiftIntensityd(keys="image", offsets=0.1, prob=0.15),
            T.RandAdjustContrastd(keys="image", gamma=(0.7, 1.5), prob=0.3),
            T.RandGaussianNoised(keys="image", prob=0.1, std=0.1),
            T.SelectItemsd(keys=keys),
        ]
    ).set_random_state(seed)
    start = time.perf_counter()
    dataset = CacheDataset(
        files, transform=transform, cache_rate=1.0, num_workers=0, progress=False
    )
    cache_s = time.perf_counter() - start
    loader = DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=0, drop_last=True)
    return loader, cache_s


def endless(loader):
    while True:
        yield from loader


def time_batches(source, n: int) -> float:
    """Patches per second over ``n`` batches drawn from an iterator."""
    start = time.perf_counter()
    for _ in range(n):
        batch = next(source)
        images = batch["image"] if isinstance(batch, dict) else batch[0]
        assert tuple(images.shape) == (BATCH, 1, *PATCH), images.shape
    return n * BATCH / (time.perf_counter() - start)


def train_steps_per_second(steps: int) -> float:
    from monai.losses import DiceCELoss
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    net = UNet(
        spatial_dims=3,
        in_channels=1,
        out_channels=3,
        channels=(16, 32, 64, 128),
        strides=(2, 2, 2),
        num_res_units=2,
    )
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    x = torch.randn(BATCH, 1, *PATCH)
    y = torch.randint(0, 3, (BATCH, 1, *PATCH))
    times = []
    for i in range(steps + 2):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss_fn(net(x), y).backward()
        opt.step()
        if i >= 2:  # warm-up
            times.append(time.perf_counter() - start)
    return 1.0 / statistics.median(times)


def main() -> None:
    repo = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=repo.parent / "shared" / "data" / "hippocampus"
    )
    parser.add_argument("--cases", type=int, default=60)
    parser.add_argument("--batches", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--train-steps", type=int, default=8)
    parser.add_argument("--out", type=Path, default=repo / "bench_results" / "loader.json")
    args = parser.parse_args()
    if not (args.data / "dataset.json").is_file():
        raise SystemExit(f"no dataset at {args.data} (expected the MSD hippocampus folder)")
    names = sorted(
        Path(e["label"]).name[: -len(".nii.gz")]
        for e in json.loads((args.data / "dataset.json").read_text())["training"]
    )[: args.cases]

    os.environ["SEGBALANCE_CACHE"] = tempfile.mkdtemp(prefix="sb_bench_cache_")  # cold cache
    plain, weighted, prep_s = segbalance_loaders(args.data, names, seed=0)
    monai_dl, cache_s = monai_loader(args.data, names, seed=0)
    sources = {
        "segbalance": (plain.batch(i) for i in range(10**9)),
        "segbalance+weights": (weighted.batch(i) for i in range(10**9)),
        "monai": endless(monai_dl),
    }
    for source in sources.values():  # warm-up (imports, first memory-map touches)
        time_batches(source, 2)
    default_threads = torch.get_num_threads()
    # Loaders are compared with one torch thread, as inside DataLoader workers: with 2
    # intra-op threads on a loaded 2-core machine every small torch op waits for a busy
    # core, which slows MONAI's many small ops ~7x and would inflate the ratio. The
    # default-thread numbers are recorded too.
    rates: dict[str, dict[str, list[float]]] = {}
    for threads in dict.fromkeys((1, default_threads)):
        torch.set_num_threads(threads)
        rates[str(threads)] = {name: [] for name in sources}
        for _ in range(args.repeats):
            for name, source in sources.items():
                rates[str(threads)][name].append(time_batches(source, args.batches))
    torch.set_num_threads(default_threads)
    medians = {t: {name: statistics.median(v) for name, v in r.items()} for t, r in rates.items()}
    main_rates = medians["1"]
    steps = train_steps_per_second(args.train_steps)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}",
        "versions": {
            "torch": torch.__version__,
            "monai": monai.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "cases": len(names),
        "patch": list(PATCH),
        "batch": BATCH,
        "patches_per_s": main_rates,
        "patches_per_s_by_torch_threads": medians,
        "patches_per_s_all": rates,
        "ratio_vs_monai": {
            n: main_rates[n] / main_rates["monai"] for n in ("segbalance", "segbalance+weights")
        },
        "train_threads": default_threads,
        "train_steps_per_s": steps,
        "loader_batches_per_train_step": {n: main_rates[n] / BATCH / steps for n in main_rates},
        "one_off_s": {"segbalance_preprocess_cold": prep_s, "monai_cache_fill": cache_s},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(
        f"hippocampus, {len(names)} cases, patch {PATCH}, batch {BATCH}, {args.repeats} rounds x {args.batches} batches"
    )
    header = "".join(f"{'patches/s (' + t + ' thr)':>22}{'vs MONAI':>10}" for t in medians)
    print(f"{'pipeline':<20}{header}{'batches/train step':>20}")
    for name in main_rates:
        cells = "".join(
            f"{medians[t][name]:>22.1f}{medians[t][name] / medians[t]['monai']:>9.2f}x"
            for t in medians
        )
        print(f"{name:<20}{cells}{main_rates[name] / BATCH / steps:>20.1f}")
    print(f"UNet 16-32-64-128 fwd+bwd+step ({default_threads} threads): {steps:.2f} steps/s")
    print(
        f"one-off: segbalance preprocessing (cold cache) {prep_s:.1f} s, MONAI cache fill {cache_s:.1f} s"
    )
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
