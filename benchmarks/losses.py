"""Loss speed and memory vs MONAI / PyTorch references, same process, interleaved runs.

Forward+backward time (median of >= 10 runs after warm-up; ours and the reference
alternate run by run so machine load hits both alike) and peak extra memory (CPU: sampled
peak RSS minus RSS before the call) at logits (2, C, 128, 128, 128) float32, C = 2 and 1
(``--classes 2,1,3`` adds the general softmax path). Both sides run in one process with
the same torch thread count (``--threads``).

    python benchmarks/losses.py [--size 128] [--repeats 10] [--threads N] [--classes 2,1]
        [--only ce dice] [--out bench_results/losses.json] [--markdown table.md]
    python benchmarks/losses.py --combine run1.json run2.json ... [--markdown table.md]
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

import monai
import numpy as np
import psutil
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss, DiceLoss, FocalLoss, GeneralizedDiceLoss, TverskyLoss

from segbalance.losses import build_loss, inverse_lesion_weights

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# DESIGN.md "Speed references": time ratio targets (rows without one are reported only)
TARGETS = {
    "ce": 1.1,
    "la_ce": 1.1,
    "topk_ce": 1.1,
    "focal": 0.8,
    "dice": 0.8,
    "generalized_dice": 0.8,
    "tversky": 0.8,
    "dice+ce": 0.6,
    "balanced": 0.6,
    "ce+topk_dice": 0.6,
}


def fwd_bwd(fn: LossFn, logits: torch.Tensor, target: torch.Tensor) -> float:
    z = logits.detach().requires_grad_()
    start = time.perf_counter()
    fn(z, target).backward()
    return time.perf_counter() - start


def peak_extra_mb(fn: LossFn, logits: torch.Tensor, target: torch.Tensor) -> float:
    """Peak RSS above the baseline while one forward+backward runs (sampled every 1 ms)."""
    proc = psutil.Process()
    z = logits.detach().requires_grad_()
    base = proc.memory_info().rss
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.001)

    thread = threading.Thread(target=sample)
    thread.start()
    fn(z, target).backward()
    done.set()
    thread.join()
    peak[0] = max(peak[0], proc.memory_info().rss)
    return (peak[0] - base) / 2**20


def compare(ours: LossFn, ref: LossFn, logits, target, repeats: int) -> dict[str, float]:
    for _ in range(2):  # warm-up
        fwd_bwd(ours, logits, target)
        fwd_bwd(ref, logits, target)
    t_ours, t_ref = [], []
    for _ in range(repeats):
        t_ours.append(fwd_bwd(ours, logits, target))
        t_ref.append(fwd_bwd(ref, logits, target))
    ours_ms, ref_ms = statistics.median(t_ours) * 1e3, statistics.median(t_ref) * 1e3
    return {
        "ours_ms": ours_ms,
        "ref_ms": ref_ms,
        "ratio": ours_ms / ref_ms,
        "ours_peak_mb": peak_extra_mb(ours, logits, target),
        "ref_peak_mb": peak_extra_mb(ref, logits, target),
    }


def cases(n_classes: int) -> list[tuple[str, LossFn, str, LossFn]]:
    """(our name, our fn, reference name, reference fn) for one channel count."""
    binary = n_classes == 1
    act = {"sigmoid": True} if binary else {"softmax": True, "to_onehot_y": True}
    bg = binary  # our C>=2 default excludes the background; match MONAI to it

    def monai(loss):
        return lambda z, t: loss(z, t.unsqueeze(1).float() if binary else t.unsqueeze(1))

    def torch_ce(z, t):
        if binary:
            return F.binary_cross_entropy_with_logits(z[:, 0], t.float())
        return F.cross_entropy(z, t)

    prior = 0.002 if binary else [0.998] + [0.002 / (n_classes - 1)] * (n_classes - 1)
    # the target is integer labels in [0, C); C = 1 uses {0, 1}
    ours = {name: build_loss(name) for name in ["ce", "topk_ce", "dice", "pm_dice", "asym"]}
    rows = [
        ("ce", ours["ce"], "torch CE", torch_ce),
        ("la_ce", build_loss("la_ce", prior=prior), "torch CE", torch_ce),
        ("topk_ce", ours["topk_ce"], "torch CE", torch_ce),
        ("focal", build_loss("focal"), "MONAI FocalLoss", monai(_monai_focal(binary))),
        ("dice", ours["dice"], "MONAI DiceLoss", monai(DiceLoss(include_background=bg, **act))),
        (
            "generalized_dice",
            build_loss("generalized_dice"),
            "MONAI GeneralizedDiceLoss",
            monai(GeneralizedDiceLoss(include_background=True, **act))
            if not binary
            else monai(GeneralizedDiceLoss(include_background=True, sigmoid=True)),
        ),
        (
            "tversky",
            build_loss("tversky", alpha=0.5, beta=0.5),
            "MONAI TverskyLoss",
            monai(TverskyLoss(include_background=bg, alpha=0.5, beta=0.5, **act)),
        ),
        ("asym", ours["asym"], "MONAI DiceLoss", monai(DiceLoss(include_background=bg, **act))),
        (
            "pm_dice",
            ours["pm_dice"],
            "MONAI DiceLoss",
            monai(DiceLoss(include_background=bg, **act)),
        ),
        (
            "topk_dice",
            build_loss("topk_dice"),
            "MONAI DiceLoss",
            monai(DiceLoss(include_background=True, **act)),
        ),
        ("balanced_ce", build_loss("balanced_ce"), "torch CE", torch_ce),
        ("dbce", build_loss("dbce"), "torch CE", torch_ce),
        ("calf", build_loss("calf", branch="log10_bce"), "torch CE", torch_ce),
        (
            "dice+ce",
            build_loss("dice+ce"),
            "MONAI DiceCELoss",
            monai(DiceCELoss(include_background=bg, **act)),
        ),
        (
            "balanced",
            build_loss("balanced", prior=prior),
            "MONAI DiceCELoss",
            monai(DiceCELoss(include_background=bg, **act)),
        ),
        (
            "ce+topk_dice",
            build_loss("ce+topk_dice"),
            "MONAI DiceCELoss",
            monai(DiceCELoss(include_background=True, **act)),
        ),
    ]
    return rows


def _monai_focal(binary: bool):
    if binary:
        return FocalLoss(gamma=2.0)
    return FocalLoss(gamma=2.0, use_softmax=True, to_onehot_y=True)


def lesion_volume(size: int, n_lesions: int, seed: int = 0) -> np.ndarray:
    """A ``size^3`` label map with ``n_lesions`` random ellipsoids (radii 1-6 voxels)."""
    rng = np.random.default_rng(seed)
    grid = np.ogrid[:size, :size, :size]
    labels = np.zeros((size,) * 3, dtype=np.uint8)
    for _ in range(n_lesions):
        centre = rng.integers(8, size - 8, 3)
        radii = rng.uniform(1, 6, 3)
        dist = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii, strict=True))
        labels[dist <= 1] = 1
    return labels


def scipy_inverse_weights(labels: np.ndarray) -> np.ndarray:
    """The same weights computed with ``scipy.ndimage.label`` (26-connectivity)."""
    from scipy import ndimage

    comps, k = ndimage.label(labels > 0, structure=np.ones((3, 3, 3)))
    sizes = np.bincount(comps.ravel())
    w = labels.size / ((k + 1) * sizes.astype(np.float64))
    return np.clip(w, 1, 2e5)[comps].astype(np.float32)


def bench_weights(size: int, repeats: int) -> dict[str, float]:
    labels = lesion_volume(size, 50)
    np.testing.assert_allclose(inverse_lesion_weights(labels), scipy_inverse_weights(labels))
    t_ours, t_ref = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        inverse_lesion_weights(labels)
        t_ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        scipy_inverse_weights(labels)
        t_ref.append(time.perf_counter() - start)
    ours_ms, ref_ms = statistics.median(t_ours) * 1e3, statistics.median(t_ref) * 1e3
    return {"ours_ms": ours_ms, "ref_ms": ref_ms, "speedup": ref_ms / ours_ms}


def markdown_table(results: dict[str, object], n_classes: int, size: int, repeats: int) -> str:
    """The measured rows of one channel count as a markdown table."""
    lines = [
        f"**logits (2, {n_classes}, {size}, {size}, {size}) float32**, forward+backward, median of "
        f"{repeats} interleaved runs (ms); peak extra RSS (MB)",
        "",
        "| loss | ours ms | reference | ref ms | ratio | target | met | MB ours / ref |",
        "|---|---:|---|---:|---:|---:|:---:|---:|",
    ]
    prefix = f"C{n_classes}/"
    for key, row in results.items():
        if not key.startswith(prefix) or not isinstance(row, dict):
            continue
        name = key[len(prefix) :]
        target = TARGETS.get(name)
        met = "-" if target is None else ("yes" if row["ratio"] <= target else "**no**")
        lines.append(
            f"| `{name}` | {row['ours_ms']:.1f} | {row['reference']} | {row['ref_ms']:.1f} | "
            f"{row['ratio']:.2f} | {'' if target is None else f'<= {target}'} | {met} | "
            f"{row['ours_peak_mb']:.0f} / {row['ref_peak_mb']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def combine_runs(paths: list[Path]) -> str:
    """Markdown tables from several JSON runs: per row the median over runs of each run's
    (interleaved, median-of-repeats) times and ratio, with the range of the ratios."""
    runs = [json.loads(p.read_text()) for p in paths]
    keys = [k for k in runs[0] if "/" in k and all(k in r for r in runs)]
    out = []
    for n_classes in sorted({int(k.split("/")[0][1:]) for k in keys}, reverse=True):
        size = runs[0]["size"]
        out += [
            f"**logits (2, {n_classes}, {size}, {size}, {size}) float32**, forward+backward; "
            f"median over {len(runs)} runs of (median of {runs[0]['repeats']} interleaved "
            "repeats); ratio range over the runs; peak extra RSS (MB, median)",
            "",
            "| loss | ours ms | reference | ref ms | ratio | range | target | met | MB ours / ref |",
            "|---|---:|---|---:|---:|---|---:|:---:|---:|",
        ]
        for key in [k for k in keys if k.startswith(f"C{n_classes}/")]:
            rows = [r[key] for r in runs]
            name = key.split("/", 1)[1]
            ratios = [row["ratio"] for row in rows]
            ratio = statistics.median(ratios)
            target = TARGETS.get(name)
            met = "-" if target is None else ("yes" if ratio <= target else "**no**")
            med = {
                f: statistics.median(row[f] for row in rows) for f in rows[0] if f != "reference"
            }
            out.append(
                f"| `{name}` | {med['ours_ms']:.1f} | {rows[0]['reference']} | "
                f"{med['ref_ms']:.1f} | {ratio:.2f} | {min(ratios):.2f}-{max(ratios):.2f} | "
                f"{'' if target is None else f'<= {target}'} | {met} | "
                f"{med['ours_peak_mb']:.0f} / {med['ref_peak_mb']:.0f} |"
            )
        out.append("")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--only", nargs="*", help="loss names to run (default: all)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (both sides)")
    parser.add_argument("--classes", default="2,1", help="channel counts, e.g. 2,1,3")
    parser.add_argument("--out", type=Path, default=Path("bench_results/losses.json"))
    parser.add_argument("--markdown", type=Path, default=None, help="also write the tables")
    parser.add_argument(
        "--combine", type=Path, nargs="+", help="only combine earlier JSON runs into tables"
    )
    args = parser.parse_args()
    if args.combine:
        text = combine_runs(args.combine)
        print(text)
        if args.markdown is not None:
            args.markdown.write_text(text)
        return
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    results: dict[str, object] = {
        "torch": torch.__version__,
        "monai": monai.__version__,
        "threads": torch.get_num_threads(),
        "size": args.size,
        "repeats": args.repeats,
    }
    channel_counts = [int(c) for c in args.classes.split(",")]
    for n_classes in channel_counts:
        shape = (2, n_classes, args.size, args.size, args.size)
        logits = torch.randn(shape)
        fg = torch.rand(2, args.size, args.size, args.size) < 0.01
        # C >= 3: the foreground voxels spread over the foreground classes
        labels = torch.randint(1, max(2, n_classes), fg.shape)
        target = torch.where(fg, labels, torch.zeros_like(labels))
        print(f"\nlogits {shape} float32, fwd+bwd median of {args.repeats} (ms)")
        print(f"{'loss':<18}{'ours':>9}{'reference':>28}{'ref':>9}{'ratio':>8}{'MB ours/ref':>16}")
        for name, ours, ref_name, ref in cases(n_classes):
            if args.only and name not in args.only:
                continue
            r = compare(ours, ref, logits, target, args.repeats)
            results[f"C{n_classes}/{name}"] = {"reference": ref_name, **r}
            print(
                f"{name:<18}{r['ours_ms']:>9.1f}{ref_name:>28}{r['ref_ms']:>9.1f}"
                f"{r['ratio']:>8.2f}{r['ours_peak_mb']:>9.0f}/{r['ref_peak_mb']:.0f}"
            )
    if args.markdown is not None:
        tables = [markdown_table(results, c, args.size, args.repeats) for c in channel_counts]
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text("\n".join(tables))
    w = bench_weights(args.size, args.repeats)
    results["inverse_lesion_weights"] = w
    print(
        f"\ninverse_lesion_weights {args.size}^3, 50 lesions: ours {w['ours_ms']:.1f} ms, "
        f"scipy.ndimage.label {w['ref_ms']:.1f} ms, speed-up {w['speedup']:.1f}x"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
