"""segbalance losses: every loss of METHODS.md, compounds, and inverse lesion weighting.

>>> from segbalance.losses import build_loss
>>> loss_fn = build_loss("0.5*la_ce+dice", prior=0.002)
"""

from segbalance.losses.balanced_ce import BalancedCELoss, DilatedBalancedCELoss
from segbalance.losses.base import SegLoss
from segbalance.losses.calf import CALFLoss
from segbalance.losses.compound import (
    LOSS_CLASSES,
    CompoundLoss,
    build_loss,
    parse_loss_expression,
)
from segbalance.losses.crossentropy import (
    CrossEntropyLoss,
    FocalLoss,
    LogitAdjustedCELoss,
    TopKCELoss,
    clamp_estimated_prior,
)
from segbalance.losses.dice import (
    AsymmetricSimilarityLoss,
    DiceLoss,
    GeneralizedDiceLoss,
    TverskyLoss,
)
from segbalance.losses.dice_variants import PixelModulatedDiceLoss, TopKDiceLoss
from segbalance.losses.inputs import LossInputs
from segbalance.losses.spec import available_losses
from segbalance.losses.weighting import inverse_lesion_weights

__all__ = [
    "LOSS_CLASSES",
    "AsymmetricSimilarityLoss",
    "BalancedCELoss",
    "CALFLoss",
    "CompoundLoss",
    "CrossEntropyLoss",
    "DiceLoss",
    "DilatedBalancedCELoss",
    "FocalLoss",
    "GeneralizedDiceLoss",
    "LogitAdjustedCELoss",
    "LossInputs",
    "PixelModulatedDiceLoss",
    "SegLoss",
    "TopKCELoss",
    "TopKDiceLoss",
    "TverskyLoss",
    "available_losses",
    "build_loss",
    "clamp_estimated_prior",
    "inverse_lesion_weights",
    "parse_loss_expression",
]
