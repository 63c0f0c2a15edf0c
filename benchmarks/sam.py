"""SAM-family step cost vs plain AdamW, and (``--phantom``) a short training comparison.

Part 1 (default): seconds per optimiser step on a MONAI 3D UNet (channels 16-128, 2
residual units), batch 2x1x64^3, CPU, same process. Optimisers run in interleaved
rounds (machine load hits all alike); within a round each runs whole cycles (LookSAM:
k=5 steps, SAM-k: k=2 steps, others: 2 steps) so the cheap and the expensive steps of
the efficient variants are both counted. Reported: the median over rounds of
(mean step time / plain AdamW's mean step time in the same round), and the ratio of the
per-optimiser minima over rounds (the least disturbed rounds). One torch thread by
default: with 2 threads on 2 shared cores, a descheduled thread stalls the other.

Part 2 (``--phantom``): a short training run per optimiser (AdamW, SAM, ASAM, LookSAM) on
a small synthetic phantom; at the end ``sharpness()`` on the training cases and Dice on
held-out cases.

    python benchmarks/sam.py [--rounds 5] [--phantom] [--out bench_results/sam.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import monai
import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.nets import UNet

from segbalance.optim import LookSAM, PeriodicSAM, sam_step, sharpness
from segbalance.optim.sam import SAM

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
LR = 1e-3


def soft_dice_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Fallback Dice+CE (softmax, foreground Dice per sample, smooth 1e-5) if losses are absent."""
    target = target[:, 0].long() if target.ndim == logits.ndim else target.long()
    ce = F.cross_entropy(logits, target)
    probs = logits.softmax(1)[:, 1:]
    onehot = F.one_hot(target, logits.shape[1]).movedim(-1, 1)[:, 1:].to(probs)
    dims = tuple(range(2, logits.ndim))
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    dice = 1 - (2 * inter + 1e-5) / (denom + 1e-5)
    return ce + dice.mean()


def dice_ce_loss() -> tuple[LossFn, str]:
    try:
        from segbalance.losses import build_loss

        return build_loss("dice+ce"), 'segbalance build_loss("dice+ce")'
    except ImportError:
        return soft_dice_ce, "inline soft Dice + CE"


def make_optimizer(kind: str, model: torch.nn.Module) -> torch.optim.Optimizer:
    params = list(model.named_parameters())
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=LR)
    if kind == "sam":
        return SAM(params, torch.optim.AdamW, lr=LR)
    if kind == "asam":
        return SAM(params, torch.optim.AdamW, adaptive=True, lr=LR)
    if kind == "looksam":
        return LookSAM(params, torch.optim.AdamW, k=5, alpha=0.7, lr=LR)
    if kind == "sam_k":
        return PeriodicSAM(params, torch.optim.AdamW, k=2, lr=LR)
    raise ValueError(kind)


CYCLE = {"adamw": 2, "sam": 2, "asam": 2, "looksam": 5, "sam_k": 2}


def plain_step(model, opt, loss_fn, x, y) -> None:
    """The reference: an ordinary AdamW training step."""
    opt.zero_grad(set_to_none=True)
    loss_fn(model(x), y).backward()
    opt.step()


def timing(rounds: int) -> dict:
    torch.manual_seed(0)
    x = torch.randn(2, 1, 64, 64, 64)
    y = (torch.rand(2, 1, 64, 64, 64) > 0.995).long()
    loss_fn, loss_name = dice_ce_loss()
    setups = {}
    for kind in CYCLE:
        torch.manual_seed(0)
        model = UNet(3, 1, 2, channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=2)
        setups[kind] = (model, make_optimizer(kind, model))

    def run(kind: str, steps: int) -> float:
        model, opt = setups[kind]
        start = time.perf_counter()
        for _ in range(steps):
            if kind == "adamw":
                plain_step(model, opt, loss_fn, x, y)
            else:
                sam_step(model, opt, loss_fn, [(x, y)])
        return (time.perf_counter() - start) / steps

    for kind in CYCLE:  # warm-up (allocator, MKLDNN kernels); LookSAM warms both paths
        run(kind, 1 if kind != "looksam" else 2)
        opt = setups[kind][1]
        if isinstance(opt, SAM):  # so every timed LookSAM / SAM-k cycle starts with a refresh
            opt.step_count = 0
    per_round: dict[str, list[float]] = {k: [] for k in CYCLE}
    for r in range(rounds):
        for kind, steps in CYCLE.items():
            per_round[kind].append(run(kind, steps))
        print(
            f"round {r + 1}/{rounds}: "
            + ", ".join(f"{k} {v[-1]:.3f}s" for k, v in per_round.items())
        )
    results = {"loss": loss_name, "params": sum(p.numel() for p in setups["sam"][0].parameters())}
    for kind in CYCLE:
        ratios = [t / p for t, p in zip(per_round[kind], per_round["adamw"], strict=True)]
        results[kind] = {
            "seconds_per_step_median": statistics.median(per_round[kind]),
            "seconds_per_step_min": min(per_round[kind]),
            "ratio_to_adamw_median": statistics.median(ratios),
            "ratio_of_minima": min(per_round[kind]) / min(per_round["adamw"]),
            "ratios": ratios,
        }
    return results


def load_phantom(
    n_cases: int, shape: tuple[int, int, int], fg_fraction: float
) -> tuple[np.ndarray, np.ndarray, str]:
    """(images (N,1,*S) z-scored, labels (N,1,*S)) from write_phantom, or random ellipsoids."""
    try:
        import nibabel as nib

        from segbalance.data.phantom import write_phantom
    except ImportError:
        write_phantom = None
    if write_phantom is not None:
        with tempfile.TemporaryDirectory() as tmp:
            root = write_phantom(
                Path(tmp) / "ph", n_cases=n_cases, shape=shape, fg_fraction=fg_fraction, seed=0
            )
            cases = json.loads((root / "dataset.json").read_text())["training"]
            images = [
                np.asarray(nib.load(root / c["image"]).dataobj, dtype=np.float32) for c in cases
            ]
            labels = [
                np.asarray(nib.load(root / c["label"]).dataobj, dtype=np.int64) for c in cases
            ]
        source = f"segbalance.data.phantom.write_phantom(n_cases={n_cases}, shape={shape}, fg_fraction={fg_fraction})"
    else:
        rng = np.random.default_rng(0)
        grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1)
        images, labels = [], []
        for _ in range(n_cases):
            label = np.zeros(shape, np.int64)
            for _ in range(8):
                c, r = rng.uniform(4, np.array(shape) - 4), rng.uniform(1.0, 3.0, 3)
                label |= (((grid - c) / r) ** 2).sum(-1) <= 1
            images.append(rng.normal(0, 1, shape).astype(np.float32) + 1.5 * label)
            labels.append(label)
        source = "random ellipsoids (inline)"
    img = np.stack([(i - i.mean()) / (i.std() + 1e-6) for i in images])[:, None]
    return img, np.stack(labels)[:, None], source


def dice_score(logits: torch.Tensor, label: torch.Tensor) -> float:
    pred = logits.argmax(1) == 1
    ref = label[:, 0] == 1
    inter, total = (pred & ref).sum().item(), pred.sum().item() + ref.sum().item()
    return 1.0 if total == 0 else 2 * inter / total


def phantom(steps: int, seed: int) -> dict:
    images, labels, source = load_phantom(12, (32, 32, 32), fg_fraction=0.01)
    train_x, train_y = torch.from_numpy(images[:8]), torch.from_numpy(labels[:8])
    val_x, val_y = torch.from_numpy(images[8:]), torch.from_numpy(labels[8:])
    loss_fn, loss_name = dice_ce_loss()
    out: dict = {"data": source, "loss": loss_name, "steps": steps, "seed": seed, "runs": {}}
    for kind in ("adamw", "sam", "asam", "looksam"):
        torch.manual_seed(seed)
        model = UNet(3, 1, 2, channels=(8, 16, 32), strides=(2, 2), num_res_units=1)
        opt = make_optimizer(kind, model)
        gen = torch.Generator().manual_seed(seed)
        start = time.perf_counter()
        model.train()
        for _ in range(steps):
            idx = torch.randperm(8, generator=gen)[:2]
            sam_step(model, opt, loss_fn, [(train_x[idx], train_y[idx])])
        seconds = time.perf_counter() - start
        batches = [(train_x[i : i + 2], train_y[i : i + 2]) for i in range(0, 8, 2)]
        sharp = {
            str(rho): statistics.mean(sharpness(model, loss_fn, b, rho=rho) for b in batches)
            for rho in (0.05, 0.2)
        }
        model.eval()
        with torch.no_grad():
            dice = [
                dice_score(model(val_x[i : i + 1]), val_y[i : i + 1]) for i in range(len(val_x))
            ]
            train_loss = statistics.mean(float(loss_fn(model(bx), by)) for bx, by in batches)
        out["runs"][kind] = {
            "train_seconds": seconds,
            "train_loss_end": train_loss,
            "sharpness": sharp,
            "val_dice_mean": statistics.mean(dice),
            "val_dice": dice,
        }
        print(
            f"{kind}: {seconds:.0f}s, loss {train_loss:.4f}, sharpness {sharp}, val Dice {statistics.mean(dice):.4f}"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: robust on a shared machine)"
    )
    parser.add_argument(
        "--phantom", action="store_true", help="also run the short training comparison"
    )
    parser.add_argument("--phantom-only", action="store_true", help="skip the timing part")
    parser.add_argument(
        "--steps", type=int, default=300, help="training steps per optimiser (--phantom)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("bench_results/sam.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results: dict = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}",
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "monai": monai.__version__,
        },
    }
    if not args.phantom_only:
        results["timing"] = timing(args.rounds)
        print(
            "\n| optimiser | s/step median | s/step min | ratio (median of rounds) | ratio of minima |"
        )
        print("|---|---:|---:|---:|---:|")
        for kind in CYCLE:
            t = results["timing"][kind]
            print(
                f"| {kind} | {t['seconds_per_step_median']:.3f} | {t['seconds_per_step_min']:.3f} "
                f"| {t['ratio_to_adamw_median']:.2f}x | {t['ratio_of_minima']:.2f}x |"
            )
    if args.phantom or args.phantom_only:
        results["phantom"] = phantom(args.steps, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    args.out.write_text(json.dumps(previous | results, indent=2))
    print(f"results in {args.out}")


if __name__ == "__main__":
    main()
