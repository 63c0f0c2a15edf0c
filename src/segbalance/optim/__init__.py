"""Sharpness-aware optimisers: SAM, ASAM, LookSAM, periodic SAM, and the step helper.

See ``docs/optim.md`` for a guide and ``METHODS.md`` §8 for the formulas.
"""

from segbalance.optim.factory import BASE_OPTIMIZERS, SAM_VARIANTS, build_optimizer
from segbalance.optim.sam import SAM
from segbalance.optim.sharpness import sharpness
from segbalance.optim.step import sam_step
from segbalance.optim.variants import LookSAM, PeriodicSAM

__all__ = [
    "BASE_OPTIMIZERS",
    "SAM",
    "SAM_VARIANTS",
    "LookSAM",
    "PeriodicSAM",
    "build_optimizer",
    "sam_step",
    "sharpness",
]
