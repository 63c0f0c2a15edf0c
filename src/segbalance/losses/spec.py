"""Torch-free specification of every registered loss: names, options, defaults.

``segbalance losses`` prints this table without importing torch; the loss classes read
their defaults from here (tests/losses/test_spec.py keeps the two in step).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Options every loss accepts (DESIGN.md: "all losses ignore_index, voxel_weighting").
COMMON_OPTIONS: dict[str, Any] = {"ignore_index": None, "voxel_weighting": None}
VOXEL_WEIGHTINGS: tuple[str, ...] = ("inverse_lesion",)

_DICE_COMMON = {"include_background": False, "smooth_nr": 1e-5, "smooth_dr": 1e-5, "batch": False}


@dataclass(frozen=True)
class LossSpec:
    """One registered loss: its options (name -> default) and what it accepts."""

    name: str
    summary: str
    options: dict[str, Any] = field(default_factory=dict)
    accepts_weight: bool = True
    source: str = ""

    def all_options(self) -> dict[str, Any]:
        return {**self.options, **COMMON_OPTIONS}


LOSS_SPECS: dict[str, LossSpec] = {
    s.name: s
    for s in [
        LossSpec(
            "ce",
            "cross-entropy (sigmoid BCE when C=1); optional class weights / adaptive WCE",
            {"class_weights": None, "pos_weight": None, "adaptive_pos_weight": False},
            source="METHODS §1.1",
        ),
        LossSpec(
            "balanced_ce",
            "CE with per-sample inverse-frequency class weights",
            {},
            accepts_weight=False,
            source="METHODS §1.2",
        ),
        LossSpec(
            "dbce",
            "dilated balanced CE: class weights from dilated masks",
            {"radius": 3.0, "radius_mm": None, "spacing": None},
            accepts_weight=False,
            source="METHODS §6",
        ),
        LossSpec(
            "focal",
            "focal loss, voxel mean",
            {"gamma": 2.0, "alpha": None},
            source="METHODS §1.6",
        ),
        LossSpec(
            "topk_ce",
            "mean CE of the k % hardest voxels of the batch",
            {"k": 10.0, "per_sample": False},
            source="METHODS §1.7",
        ),
        LossSpec(
            "la_ce",
            "logit-adjusted CE: prior offset added to the logits",
            {"prior": None, "tau": 1.0},
            source="METHODS §2",
        ),
        LossSpec(
            "dice",
            "soft Dice, per sample and class",
            {**_DICE_COMMON, "squared_pred": False},
            source="METHODS §1.3",
        ),
        LossSpec(
            "generalized_dice",
            "generalised Dice (Sudre 2017), 1/G^2 class weights",
            {**_DICE_COMMON, "include_background": True, "w_type": "square"},
            source="METHODS §1.4",
        ),
        LossSpec(
            "tversky",
            "Tversky loss (alpha weighs FP, beta FN)",
            {**_DICE_COMMON, "alpha": 0.3, "beta": 0.7},
            source="METHODS §1.5",
        ),
        LossSpec(
            "asym",
            "asymmetric similarity F_beta loss (Hashemi 2018, inverse-weighting variant)",
            {**_DICE_COMMON, "smooth_nr": 0.0, "smooth_dr": 1e-8, "beta": 1.5, "squared": True},
            source="METHODS §3",
        ),
        LossSpec(
            "topk_dice",
            "squared Dice on the k % voxels with the largest CE",
            {**_DICE_COMMON, "include_background": True, "k": 10.0, "selection": "shared"},
            accepts_weight=False,
            source="METHODS §4",
        ),
        LossSpec(
            "pm_dice",
            "pixel-wise modulated Dice, m = |y - sg(p)|^gamma",
            {**_DICE_COMMON, "include_background": True, "gamma": 2.0, "squared": True},
            source="METHODS §5",
        ),
        LossSpec(
            "calf",
            "CALF: transform/loss chosen from foreground-fraction skewness and kurtosis",
            {"calf_mode": "dataset", "fractions": None, "branch": None},
            accepts_weight=False,
            source="METHODS §7",
        ),
    ]
}

# Names that expand to a compound or to a loss with preset options.
COMPOUND_ALIASES: dict[str, str] = {"balanced": "la_ce+dice"}
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "iw_dice": (
        "dice",
        {
            "squared_pred": True,
            "smooth_nr": 0.0,
            "smooth_dr": 1e-8,
            "voxel_weighting": "inverse_lesion",
        },
    ),
    "iw_focal": ("focal", {"alpha": 0.75, "gamma": 2.0, "voxel_weighting": "inverse_lesion"}),
}
ALIAS_SUMMARIES: dict[str, str] = {
    "balanced": "Balanced Loss (seed poster) = la_ce + dice, 1:1",
    "iw_dice": "inverse-lesion-weighted squared Dice (inverse-weighting paper preset)",
    "iw_focal": "inverse-lesion-weighted focal, alpha 0.75, gamma 2",
}


def available_losses() -> list[str]:
    """Sorted list of every name :func:`segbalance.losses.build_loss` accepts as a term."""
    return sorted([*LOSS_SPECS, *COMPOUND_ALIASES, *PRESETS])


def loss_table() -> list[dict[str, str]]:
    """Rows ``{name, summary, options}`` for the ``segbalance losses`` table."""
    rows = []
    for name in available_losses():
        if name in LOSS_SPECS:
            spec = LOSS_SPECS[name]
            opts = ", ".join(f"{k}={v!r}" for k, v in spec.options.items()) or "-"
            summary = spec.summary + ("" if spec.accepts_weight else " [no voxel weights]")
        elif name in COMPOUND_ALIASES:
            opts, summary = f"= {COMPOUND_ALIASES[name]}", ALIAS_SUMMARIES[name]
        else:
            base, preset = PRESETS[name]
            opts = f"= {base}(" + ", ".join(f"{k}={v!r}" for k, v in preset.items()) + ")"
            summary = ALIAS_SUMMARIES[name]
        rows.append({"name": name, "summary": summary, "options": opts})
    return rows
