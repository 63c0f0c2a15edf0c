"""The torch-free spec (losses/spec.py) and the loss classes agree (DESIGN Decisions)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from segbalance.losses import available_losses, build_loss
from segbalance.losses import spec as loss_spec

from .conftest import random_case, tl, tt

NEEDED = {"la_ce": {"prior": 0.05}, "calf": {"branch": "ln_bce"}}


def test_available_losses_matches_spec() -> None:
    assert available_losses() == loss_spec.available_losses()


@pytest.mark.parametrize("name", available_losses())
def test_every_name_builds_and_is_a_module(name: str) -> None:
    opts: dict[str, Any] = {}
    if name in ("la_ce", "balanced"):
        opts["prior"] = 0.05
    if name == "calf":
        opts["branch"] = "ln_bce"
    loss = build_loss(name, **opts)
    assert isinstance(loss, torch.nn.Module)
    z, t = random_case(601, n_classes=1)
    out = loss(tt(z), tl(t))
    assert out.ndim == 0 and torch.isfinite(out)


def _explicit_defaults(name: str) -> dict[str, Any]:
    """Every spec option at its default value, with the required ones filled in."""
    opts = dict(loss_spec.LOSS_SPECS[name].all_options())
    for key, val in NEEDED.get(name, {}).items():
        opts[key] = val
    if name == "dbce":
        opts.pop("radius_mm")  # radius and radius_mm are alternatives
        opts.pop("spacing")
    if name == "calf":
        opts.pop("fractions")  # branch given instead
    return opts


@pytest.mark.parametrize("name", sorted(loss_spec.LOSS_SPECS))
@pytest.mark.parametrize("c", [1, 3])
def test_spec_defaults_are_the_behavioural_defaults(name: str, c: int) -> None:
    """build_loss(name, option=spec default, ...) behaves exactly like build_loss(name)."""
    opts = _explicit_defaults(name)
    base = dict(NEEDED.get(name, {}))
    if name == "la_ce" and c == 3:
        opts["prior"] = base["prior"] = [0.9, 0.06, 0.04]
    z, t = random_case(603, n_classes=c)
    a = float(build_loss(name, **base)(tt(z), tl(t)))
    b = float(build_loss(name, **opts)(tt(z), tl(t)))
    assert a == b


@pytest.mark.parametrize("name", sorted(loss_spec.LOSS_SPECS))
def test_loss_objects_expose_spec_defaults(name: str) -> None:
    """Options a loss exposes (an ``options`` mapping or attributes named like the option)
    hold the spec's defaults."""
    loss = build_loss(name, **NEEDED.get(name, {}))
    mapping = getattr(loss, "options", None)
    checked = 0
    for key, default in loss_spec.LOSS_SPECS[name].all_options().items():
        if key in NEEDED.get(name, {}):
            continue
        if isinstance(mapping, dict) and key in mapping:
            got = mapping[key]
        elif hasattr(loss, key):
            got = getattr(loss, key)
        else:
            continue
        checked += 1
        if isinstance(default, float):
            assert got == pytest.approx(default), key
        else:
            assert got == default, key
    if checked == 0:
        pytest.skip(f"{type(loss).__name__} exposes no options; checked behaviourally")


@pytest.mark.parametrize(
    ("name", "option", "other"),
    [("dice", "include_background", True), ("dice", "smooth_nr", 0.0), ("dice", "batch", True),
     ("dice", "squared_pred", True), ("generalized_dice", "w_type", "iw"),
     ("generalized_dice", "include_background", False), ("tversky", "alpha", 0.5),
     ("tversky", "beta", 0.5), ("asym", "beta", 1.0), ("asym", "squared", False),
     ("topk_dice", "k", 30.0), ("topk_dice", "include_background", False),
     ("topk_dice", "selection", "per_class"), ("pm_dice", "gamma", 1.0),
     ("pm_dice", "squared", False), ("pm_dice", "include_background", False),
     ("focal", "gamma", 1.0), ("focal", "alpha", 0.25), ("topk_ce", "k", 30.0),
     ("topk_ce", "per_sample", True), ("la_ce", "tau", 0.5), ("dbce", "radius", 1.0),
     ("ce", "class_weights", [1.0, 2.0, 3.0])],
)  # fmt: skip
def test_each_option_changes_the_value(name: str, option: str, other: Any) -> None:
    """Every listed option is wired: a non-default value changes the loss (C=3 case)."""
    base = {"prior": [0.9, 0.06, 0.04]} if name == "la_ce" else {}
    z, t = random_case(605, n_classes=3)
    z[1] *= 0.2  # samples of different difficulty so that per_sample matters
    a = float(build_loss(name, **base)(tt(z), tl(t)))
    b = float(build_loss(name, **base, **{option: other})(tt(z), tl(t)))
    assert a != pytest.approx(b, rel=1e-9, abs=0), (name, option)


def test_presets_match_spec() -> None:
    assert set(loss_spec.PRESETS) == {"iw_dice", "iw_focal"}
    assert loss_spec.COMPOUND_ALIASES == {"balanced": "la_ce+dice"}
