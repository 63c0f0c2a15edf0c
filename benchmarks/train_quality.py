"""Fine-tuning quality per CPU-minute: a plain MONAI pipeline vs ``segbalance train``.

One invocation runs, one after the other and with the same wall-clock budget, on the same
train/validation split (the one ``segbalance train CONFIG`` draws):

(a) the reference: the pipeline a user would write with MONAI alone (written here, with
    MONAI only): ``CacheDataset`` + ``RandCropByPosNegLabeld`` (1 positive : 2 negative),
    flips along axis 0, a small ``RandAffined``, intensity scale/shift/noise, MONAI's UNet,
    ``DiceCELoss(softmax=True, to_onehot_y=True)``, AdamW with warm-up then poly 0.9 over
    the budget, validation every 30 s (``sliding_window_inference``, gaussian, overlap
    0.5) keeping the best weights;
(b) ``segbalance train CONFIG`` with ``budget.minutes`` set to the same budget.

Each runs in its own process (so peak RSS is its own), with the config's thread count.
Recorded: validation Dice over wall-clock time, final per-class Dice of the selected model
with case-bootstrap 95 % CIs, lesion counts and lesion F1 (segbalance's metric code on
both sides), steps per second, peak RSS. Written: ``train_quality.json`` and
``train_quality.png`` (Dice vs minutes, both curves) in ``--out``.

    python benchmarks/train_quality.py                          # hippocampus, 10 min each
    python benchmarks/train_quality.py --config configs/ms_lesions.yaml --minutes 5 \
        --validate-every 60 [--val ms_007]                      # MS lesions, either direction
    python benchmarks/train_quality.py --config configs/phantom.yaml --minutes 0.2  # smoke
    python benchmarks/train_quality.py --only segbalance --reuse --set optimizer.lr=0.004

``--set`` overrides apply to the segbalance run only (levers); ``--only`` skips one side
and, with ``--reuse``, reads that side from an earlier ``train_quality.json`` in ``--out``.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

VALIDATE_EVERY_SECONDS = 30.0
WARMUP_STEPS = 50
BOOTSTRAP = 10_000


# ---- the reference pipeline (MONAI only) --------------------------------------------------
def run_reference(spec: dict[str, Any]) -> dict[str, Any]:
    """Train the plain MONAI pipeline for ``spec['minutes']`` and evaluate its best model."""
    import torch
    from monai import transforms as T
    from monai.data import CacheDataset, DataLoader
    from monai.inferers import sliding_window_inference
    from monai.losses import DiceCELoss
    from monai.networks.nets import UNet
    from monai.utils import set_determinism

    from segbalance.evaluate.case import case_metrics
    from segbalance.evaluate.metrics import dice

    torch.set_num_threads(spec["threads"])
    set_determinism(spec["seed"])  # seeds torch, numpy and MONAI's random transforms
    patch = tuple(spec["patch_size"])
    n_out = spec["n_classes"] + 1  # background + each class, softmax
    keys = ["image", "label"]
    load = [
        T.LoadImaged(keys=keys, image_only=True),
        T.EnsureChannelFirstd(keys=keys),
        T.Orientationd(keys=keys, axcodes="RAS"),
        T.NormalizeIntensityd(keys="image", channel_wise=True),
        T.SpatialPadd(keys=keys, spatial_size=patch),
        T.EnsureTyped(keys=keys, track_meta=False),
    ]
    indices = {}
    if spec["cache_indices"]:  # MONAI's own speed-up for large volumes: find fg/bg once
        load.append(T.FgBgToIndicesd(keys="label", fg_postfix="_fg", bg_postfix="_bg"))
        indices = {"fg_indices_key": "label_fg", "bg_indices_key": "label_bg"}
    augment = [
        T.RandCropByPosNegLabeld(
            keys=keys,
            label_key="label",
            spatial_size=patch,
            pos=1,
            neg=2,
            num_samples=1,
            **indices,
        ),
        *([T.DeleteItemsd(keys=list(indices.values()))] if indices else []),  # not batched
        T.RandFlipd(keys=keys, spatial_axis=0, prob=0.5),
        T.RandAffined(
            keys=keys,
            prob=0.2,
            rotate_range=[math.radians(15)] * 3,
            scale_range=[0.1] * 3,
            mode=("bilinear", "nearest"),
            padding_mode="zeros",
        ),
        T.RandScaleIntensityd(keys="image", factors=0.1, prob=0.15),
        T.RandShiftIntensityd(keys="image", offsets=0.1, prob=0.15),
        T.RandGaussianNoised(keys="image", prob=0.1, std=0.1),
    ]
    # fewer training cases than a batch (MS lesions: 1): repeat them so batches are full
    repeats = -(-spec["batch_size"] // len(spec["train"]))
    train_ds = CacheDataset(spec["train"] * repeats, T.Compose(load + augment), progress=False)
    val_ds = CacheDataset(spec["val"], T.Compose(load), progress=False)
    loader = DataLoader(train_ds, batch_size=spec["batch_size"], shuffle=True, num_workers=0)
    model = UNet(
        spatial_dims=3,
        in_channels=spec["in_channels"],
        out_channels=n_out,
        channels=(16, 32, 64, 128),
        strides=(2, 2, 2),
        num_res_units=2,
    )
    loss_fn = DiceCELoss(softmax=True, to_onehot_y=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    budget = spec["minutes"] * 60.0

    classes = list(range(1, n_out))

    def predict(item: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """Label maps (prediction, reference) of one validation case."""
        with torch.no_grad():
            logits = sliding_window_inference(
                item["image"][None], patch, 4, model, overlap=0.5, mode="gaussian"
            )
        return logits.argmax(1)[0].numpy(), item["label"][0].numpy().astype(np.int64)

    def per_case_dice() -> np.ndarray:
        """``(n_val, n_classes)`` Dice of the current model (NaN: empty reference)."""
        model.eval()
        rows = []
        for item in val_ds:
            pred, ref = predict(item)
            rows.append(
                [dice(pred == c, ref == c) if (ref == c).any() else math.nan for c in classes]
            )
        model.train()
        return np.asarray(rows, dtype=np.float64)

    curve: list[dict[str, float]] = []
    best = {"dice": -1.0, "state": None, "seconds": 0.0, "step": 0}
    steps, start = 0, time.perf_counter()
    last_val = 0.0

    def validate_now() -> None:
        nonlocal last_val
        scores = per_case_dice()
        mean = float(np.nanmean(np.nanmean(scores, axis=0)))
        now = time.perf_counter() - start
        curve.append({"seconds": now, "step": steps, "dice": mean})
        print(f"  reference {now / 60:5.2f} min, step {steps}: Dice {mean:.4f}", flush=True)
        if mean > best["dice"]:
            best.update(dice=mean, state=copy.deepcopy(model.state_dict()), step=steps)
            best["seconds"] = now
        last_val = time.perf_counter() - start

    model.train()
    done = False
    while not done:
        for batch in loader:
            elapsed = time.perf_counter() - start
            if elapsed >= budget:
                done = True
                break
            # warm-up then poly 0.9 over the wall-clock budget (as segbalance's schedule)
            progress = min(elapsed / budget, 1.0)
            factor = min(1.0, (steps + 1) / WARMUP_STEPS) * (1.0 - progress) ** 0.9
            for group in optimizer.param_groups:
                group["lr"] = 2e-3 * factor
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(batch["image"]), batch["label"])
            loss.backward()
            optimizer.step()
            steps += 1
            if time.perf_counter() - start - last_val >= spec["validate_every"]:
                validate_now()
    seconds = time.perf_counter() - start
    validate_now()
    # the selected model, scored once by segbalance's metric code (as its per_case.csv)
    model.load_state_dict(best["state"])
    model.eval()
    per_case: dict[str, list[float]] = {}
    lesions: dict[str, dict[str, Any]] = {}
    for name, item in zip(spec["val_names"], val_ds, strict=True):
        pred, ref = predict(item)
        rows = case_metrics(pred, ref, classes)
        per_case[name] = [float(r["dice"]) if (ref == r["class"]).any() else math.nan for r in rows]
        for r in rows:
            add_lesion_counts(lesions, str(r["class"]), r)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return side_record(curve, per_case, lesions, steps, seconds, best["step"], peak_rss_mb)


def side_record(
    curve: list[dict[str, float]],
    per_case: dict[str, list[float]],
    lesions: dict[str, dict[str, Any]],
    steps: int,
    seconds: float,
    best_step: int,
    peak_rss_mb: float,
) -> dict[str, Any]:
    """What the JSON holds for one pipeline (the reference or segbalance)."""
    return {
        "curve": curve,
        "per_case": per_case,
        "lesions": lesions,
        "steps": steps,
        "train_seconds": seconds,
        "steps_per_second": steps / seconds,
        "best_step": best_step,
        "peak_rss_mb": peak_rss_mb,
    }


def add_lesion_counts(totals: dict[str, dict[str, float]], cls: str, row: dict[str, Any]) -> None:
    """Sum lesion TP/FP/FN of one case and class into ``totals[cls]``."""
    entry = totals.setdefault(cls, {"tp": 0.0, "fp": 0.0, "fn": 0.0, "f1": [], "cases": 0})
    entry["tp"] += float(row["lesion_tp"])
    entry["fp"] += float(row["lesion_fp"])
    entry["fn"] += float(row["lesion_fn"])
    entry["f1"].append(float(row["lesion_f1"]))
    entry["cases"] += 1


# ---- the segbalance run -------------------------------------------------------------------
def run_segbalance(config: str, out: Path, minutes: float, sets: list[str]) -> dict[str, Any]:
    """``segbalance train CONFIG`` with the budget in minutes, in a child process."""
    run_dir = out / "segbalance"
    args = [sys.executable, "-m", "segbalance", "train", config, "--output", str(run_dir)]
    args += ["--quiet", "--set", "budget.steps=null", "--set", "budget.epochs=null"]
    args += ["--set", f"budget.minutes={minutes}"]
    for item in sets:
        args += ["--set", item]
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    subprocess.run(args, check=True)
    return read_segbalance_run(run_dir)


def read_segbalance_run(run_dir: Path) -> dict[str, Any]:
    """Curve, per-case Dice, steps and costs of a finished ``segbalance train`` run folder."""
    with open(run_dir / "train_log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    curve = [
        {"seconds": float(r["seconds"]), "step": int(r["step"]), "dice": float(r["val_dice"])}
        for r in rows
        if r.get("val_dice")
    ]
    summary = json.loads((run_dir / "summary.json").read_text())
    with open(run_dir / "per_case.csv", newline="") as f:
        cases = list(csv.DictReader(f))
    classes = sorted({int(r["class"]) for r in cases})
    per_case: dict[str, list[float]] = {}
    lesions: dict[str, dict[str, float]] = {}
    for r in cases:
        add_lesion_counts(lesions, r["class"], r)
        row = per_case.setdefault(r["case"], [math.nan] * len(classes))
        empty = float(r.get("ref_voxels") or 1) == 0
        row[classes.index(int(r["class"]))] = math.nan if empty else float(r["dice"])
    # the trainer's final evaluation records its costs next to the metrics
    steps, seconds = int(summary["steps"]), float(summary["train_seconds"])
    return side_record(
        curve, per_case, lesions, steps, seconds, summary["best_step"], summary["peak_rss_mb"]
    )


# ---- statistics, plot, JSON ---------------------------------------------------------------
def summarise(side: dict[str, Any], class_names: list[str]) -> dict[str, Any]:
    """Per-class and mean Dice of the selected model with case-bootstrap 95 % CIs."""
    from segbalance.experiments.stats import bootstrap_ci

    scores = np.asarray(list(side["per_case"].values()), dtype=np.float64)
    out: dict[str, Any] = {}
    for j, name in enumerate(class_names):
        col = scores[:, j]
        out[name] = {"dice": float(np.nanmean(col)), "ci95": list(bootstrap_ci(col, B=BOOTSTRAP))}
    lesions = sorted(side.get("lesions", {}).items(), key=lambda item: int(item[0]))
    for j, (cls, entry) in enumerate(lesions):
        name = class_names[j] if j < len(class_names) else cls
        out[name]["lesion_f1"] = float(np.nanmean(entry["f1"]))
        out[name]["lesions_found"] = f"{entry['tp']:g}/{entry['tp'] + entry['fn']:g}"
        out[name]["false_positive_lesions"] = entry["fp"]
    case_means = np.nanmean(scores, axis=1)
    out["mean"] = {
        "dice": float(np.nanmean(np.nanmean(scores, axis=0))),
        "ci95": list(bootstrap_ci(case_means, B=BOOTSTRAP)),
    }
    return out


def compare_sides(result: dict[str, Any]) -> dict[str, Any]:
    """Gain of segbalance over the reference: difference of means, paired per-case
    difference (class-averaged Dice, same cases) with its bootstrap 95 % CI and Wilcoxon p,
    and the minutes each curve needs to reach the reference's final Dice."""
    from segbalance.experiments.stats import bootstrap_ci, paired_wilcoxon

    ref, seg = result["reference"], result["segbalance"]
    ref_final = ref["final"]["mean"]["dice"]
    cases = sorted(ref["per_case"])
    a = [float(np.nanmean(seg["per_case"][c])) for c in cases]
    b = [float(np.nanmean(ref["per_case"][c])) for c in cases]
    diff = np.asarray(a) - np.asarray(b)
    test = paired_wilcoxon(a, b)
    return {
        "dice_gain": seg["final"]["mean"]["dice"] - ref_final,
        "paired_diff_ci95": list(bootstrap_ci(diff, B=BOOTSTRAP)),
        "wilcoxon_p": test["p"],
        "cases_better_worse": [int((diff > 0).sum()), int((diff < 0).sum())],
        "segbalance_minutes_to_reference_dice": minutes_to_reach(seg["curve"], ref_final),
        "reference_minutes_to_reference_dice": minutes_to_reach(ref["curve"], ref_final),
    }


def minutes_to_reach(curve: list[dict[str, float]], target: float) -> float | None:
    """Wall-clock minutes at which a validation curve first reaches ``target`` (None: never)."""
    for point in curve:
        if point["dice"] >= target:
            return point["seconds"] / 60.0
    return None


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for side, style in (("reference", "o-"), ("segbalance", "s-")):
        if side not in result:
            continue
        curve = result[side]["curve"]
        final = result[side]["final"]["mean"]["dice"]
        ax.plot(
            [p["seconds"] / 60 for p in curve],
            [p["dice"] for p in curve],
            style,
            ms=3,
            label=f"{result[side]['label']} (selected: {final:.3f})",
        )
    if "reference" in result:
        level = result["reference"]["final"]["mean"]["dice"]
        ax.axhline(level, color="grey", ls="--", lw=0.8, label=f"reference's final ({level:.3f})")
        ax.axvline(result["minutes"] / 2, color="grey", ls=":", lw=0.8)
    ax.set_xlabel("wall-clock minutes (training + validation)")
    ax.set_ylabel("validation mean Dice")
    ax.set_title(f"{result['dataset']}: {result['minutes']:g} min, {result['threads']} threads")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


def reference_spec(
    config: str, minutes: float, seed: int, val: list[str] | None = None
) -> dict[str, Any]:
    """The reference's inputs from the segbalance config: files of the same split, patch,
    batch size, threads."""
    from segbalance.config import load_config
    from segbalance.data import open_dataset
    from segbalance.train.setup import choose_split, resolve_dataset

    cfg = load_config(config, {"data.split.val": val} if val else None)
    layout = open_dataset(resolve_dataset(cfg.data.dataset, cfg.data.phantom))
    split = choose_split([c.name for c in layout.cases], cfg.data)
    files = {c.name: c for c in layout.cases}

    def items(names: list[str]) -> list[dict[str, Any]]:
        return [
            {"image": [str(p) for p in files[n].images], "label": str(files[n].label)}
            for n in names
        ]

    if cfg.data.patch_size is None:
        raise SystemExit(f"{config}: the benchmark needs data.patch_size set")
    return {
        "dataset": layout.name,
        "train": items(split["train"]),
        "val": items(split["val"]),
        "val_names": split["val"],
        "n_classes": len(layout.foreground_classes),
        "class_names": [layout.foreground_classes[k] for k in sorted(layout.foreground_classes)],
        "in_channels": layout.n_channels,
        "patch_size": list(cfg.data.patch_size),
        "batch_size": cfg.data.batch_size,
        "threads": cfg.threads or 2,
        "minutes": minutes,
        "seed": seed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/hippocampus.yaml")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--out", default="bench_results/train_quality_hippocampus")
    parser.add_argument("--set", action="append", default=[], dest="sets", metavar="KEY=VALUE")
    parser.add_argument("--only", choices=["reference", "segbalance"])
    parser.add_argument("--reuse", action="store_true", help="keep the other side from --out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch threads of both (default: config's)")
    parser.add_argument(
        "--val", help="validation cases of both, comma-separated (default: config's)"
    )
    parser.add_argument(
        "--validate-every",
        type=float,
        default=VALIDATE_EVERY_SECONDS,
        help="seconds between the reference's validations (default 30)",
    )
    parser.add_argument(
        "--cache-indices",
        action="store_true",
        help="reference: cache foreground/background indices (FgBgToIndicesd; large volumes)",
    )
    parser.add_argument("--role", help=argparse.SUPPRESS)  # child process: run the reference
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.role == "reference":
        spec = json.loads(Path(args.config).read_text())
        (out / "reference.json").write_text(json.dumps(run_reference(spec)))
        return 0

    out.mkdir(parents=True, exist_ok=True)
    val = args.val.split(",") if args.val else None
    spec = reference_spec(args.config, args.minutes, args.seed, val)
    spec["validate_every"] = args.validate_every
    spec["cache_indices"] = args.cache_indices
    if val:
        args.sets = [f"data.split.val=[{','.join(val)}]", *args.sets]
    if args.threads is not None:
        spec["threads"] = args.threads
        args.sets = [f"threads={args.threads}", *args.sets]
    result_file = out / "train_quality.json"
    previous = json.loads(result_file.read_text()) if args.reuse and result_file.is_file() else {}
    result: dict[str, Any] = {
        "dataset": spec["dataset"],
        "config": args.config,
        "minutes": args.minutes,
        "threads": spec["threads"],
        "reference_validate_every_seconds": args.validate_every,
        "reference_cache_indices": args.cache_indices,
        "n_train": len(spec["train"]),
        "n_val": len(spec["val"]),
        "classes": spec["class_names"],
        "segbalance_overrides": args.sets,
        "val_cases": spec["val_names"] if len(spec["val_names"]) <= 10 else len(spec["val_names"]),
    }
    if args.only != "segbalance":
        spec_file = out / "reference_spec.json"
        spec_file.write_text(json.dumps(spec))
        print(f"reference (MONAI) pipeline: {args.minutes:g} min ...", flush=True)
        cmd = [sys.executable, __file__, "--role", "reference", "--config", str(spec_file)]
        subprocess.run([*cmd, "--out", str(out)], check=True)
        result["reference"] = json.loads((out / "reference.json").read_text())
        result["reference"]["label"] = "MONAI reference"
    elif "reference" in previous:
        result["reference"] = previous["reference"]
    if args.only != "reference":
        print(f"segbalance train {args.config}: {args.minutes:g} min ...", flush=True)
        result["segbalance"] = run_segbalance(args.config, out, args.minutes, args.sets)
        result["segbalance"]["label"] = "segbalance"
    elif "segbalance" in previous:
        result["segbalance"] = previous["segbalance"]
    for side in ("reference", "segbalance"):
        if side in result:
            result[side]["final"] = summarise(result[side], spec["class_names"])
    if "reference" in result and "segbalance" in result:
        result["comparison"] = compare_sides(result)
    tmp = result_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(result_file)
    plot(result, out / "train_quality.png")
    print_table(result)
    return 0


def print_table(result: dict[str, Any]) -> None:
    """The markdown rows of docs/benchmarks.md (lesion columns where a class has lesions)."""
    print(f"\n{result['dataset']}: {result['minutes']:g} min, {result['threads']} threads")
    print(
        "| pipeline | "
        + " | ".join(result["classes"])
        + " | mean [95% CI] | steps/s | peak RSS MB |"
    )
    for side in ("reference", "segbalance"):
        if side not in result:
            continue
        r = result[side]
        f = r["final"]
        cells = [
            f"{f[c]['dice']:.3f}"
            + (
                f" (lesion F1 {f[c]['lesion_f1']:.2f}, {f[c]['lesions_found']} found, "
                f"{f[c]['false_positive_lesions']:g} FP)"
                if "lesion_f1" in f[c]
                else ""
            )
            for c in result["classes"]
        ]
        lo, hi = f["mean"]["ci95"]
        print(
            f"| {r['label']} | " + " | ".join(cells) + f" | {f['mean']['dice']:.3f} "
            f"[{lo:.3f}, {hi:.3f}] | {r['steps_per_second']:.2f} | {r['peak_rss_mb'] or 0:.0f} |"
        )
    if "comparison" in result:
        print(json.dumps(result["comparison"]))


if __name__ == "__main__":
    raise SystemExit(main())
