"""segbalance losses: every loss of METHODS.md, compounds, and inverse lesion weighting.

>>> from segbalance.losses import build_loss
>>> loss_fn = build_loss("0.5*la_ce+dice", prior=0.002)

Attributes are imported lazily (PEP 562), so ``segbalance.losses.spec`` (names, options,
defaults) can be read without importing torch: ``segbalance losses`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BalancedCELoss": "balanced_ce",
    "DilatedBalancedCELoss": "balanced_ce",
    "SegLoss": "base",
    "CALFLoss": "calf",
    "LOSS_CLASSES": "compound",
    "CompoundLoss": "compound",
    "build_loss": "compound",
    "parse_loss_expression": "compound",
    "CrossEntropyLoss": "crossentropy",
    "FocalLoss": "crossentropy",
    "LogitAdjustedCELoss": "crossentropy",
    "TopKCELoss": "crossentropy",
    "clamp_estimated_prior": "crossentropy",
    "AsymmetricSimilarityLoss": "dice",
    "DiceLoss": "dice",
    "GeneralizedDiceLoss": "dice",
    "TverskyLoss": "dice",
    "PixelModulatedDiceLoss": "dice_variants",
    "TopKDiceLoss": "dice_variants",
    "LossInputs": "inputs",
    "available_losses": "spec",
    "inverse_lesion_weights": "weighting",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f"segbalance.losses.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'segbalance.losses' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
