"""``segbalance demo``: the embedded default comparison on the synthetic phantom.

Full: 7 methods x 2 seeds, 0.4 minute per run, 2 runs at a time: about 4-5 minutes on 2
CPU cores. ``--quick``: 3 methods x 1 seed, 12 steps each (about 30 s; tests use it).
"""

from __future__ import annotations

from segbalance.config import CompareConfig

DEMO_CELLS = [
    {"name": "baseline", "loss": "dice+ce", "optimizer": "adamw"},
    {"name": "sam", "loss": "dice+ce", "optimizer": "sam"},
    {"name": "balanced", "loss": "balanced", "optimizer": "adamw"},
    {"name": "balanced+sam", "loss": "balanced", "optimizer": "sam"},
    {"name": "ce+topk_dice", "loss": "ce+topk_dice", "optimizer": "adamw"},
    {"name": "iw_dice", "loss": "iw_dice", "optimizer": "adamw"},
    {"name": "calf", "loss": "calf", "optimizer": "adamw"},
]

DEMO_TRAIN = {
    "data": {
        "phantom": {"n_cases": 8, "shape": [48, 48, 48], "fg_fraction": 0.002, "seed": 0},
        "split": {"folds": 4, "fold": 0, "seed": 0},
        "patch_size": [32, 32, 32],
        "batch_size": 2,
        "batches_per_epoch": 20,
        "oversample_foreground": 0.5,
    },
    "model": {
        "name": "unet",
        "kwargs": {"channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 1},
    },
    "optimizer": {"name": "adamw", "lr": 0.01, "weight_decay": 0.0001},
    "schedule": {"name": "poly", "warmup_steps": 10},
    "validation": {"every_epochs": 2},
}


def demo_config(*, quick: bool = False, output: str = "demo_output/demo") -> CompareConfig:
    """The demo's comparison config (phantom, the seed methods, statistics, report)."""
    train = {k: (dict(v) if isinstance(v, dict) else v) for k, v in DEMO_TRAIN.items()}
    if quick:
        train["data"] = {
            **DEMO_TRAIN["data"],
            "batches_per_epoch": 6,
            "phantom": {"n_cases": 4, "shape": [32, 32, 32], "fg_fraction": 0.01, "seed": 0},
            "split": {"folds": 2, "fold": 0, "seed": 0},
            "patch_size": [16, 16, 16],
        }
        train["model"] = {
            "name": "unet",
            "kwargs": {"channels": [4, 8], "strides": [2], "num_res_units": 0},
        }
        return CompareConfig(
            dataset="phantom",
            phantom=train["data"].pop("phantom"),
            train=train,
            budget={"steps": 12},
            seeds=[0],
            cells=DEMO_CELLS[:3],
            output=output,
            jobs=3,
            landscape_steps=5,
            sharpness=True,
        )
    return CompareConfig(
        dataset="phantom",
        phantom=train["data"].pop("phantom"),
        train=train,
        budget={"minutes": 0.4},
        seeds=[0, 1],
        cells=DEMO_CELLS,
        output=output,
        jobs=2,
        sharpness=True,
    )
