"""``build_optimizer``: the optimiser the trainer builds from ``optimizer.*`` config."""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from segbalance.errors import did_you_mean
from segbalance.optim.sam import SAM
from segbalance.optim.variants import LookSAM, PeriodicSAM

BASE_OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adamw": torch.optim.AdamW,
    "adam": torch.optim.Adam,
    "sgd": torch.optim.SGD,
}
SAM_VARIANTS: dict[str, type[SAM] | None] = {
    "none": None,
    "sam": SAM,
    "asam": SAM,
    "looksam": LookSAM,
    "sam_k": PeriodicSAM,
}
_SAM_OPTIONS = (
    "asam_eta",
    "asam_exclude_bias",
    "exclude_norm_bias",
    "sam_start_frac",
    "total_steps",
)
_VARIANT_OPTIONS = {
    "none": (),
    "sam": _SAM_OPTIONS,
    "asam": _SAM_OPTIONS,
    "looksam": (*_SAM_OPTIONS, "k", "alpha", "looksam_global"),
    "sam_k": (*_SAM_OPTIONS, "k"),
}


def build_optimizer(
    model_or_params: nn.Module | Iterable[Any],
    name: str = "adamw",
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    sam_variant: str = "none",
    rho: float | None = None,
    **kw: Any,
) -> torch.optim.Optimizer:
    """Build a base optimiser, optionally wrapped in a SAM variant.

    Args:
        model_or_params: a module (its trainable ``named_parameters()`` are used, so
            ASAM's weight rule sees names) or anything a torch optimiser accepts.
        name: base optimiser, one of ``adamw``, ``adam``, ``sgd``.
        lr, weight_decay: base optimiser learning rate and weight decay.
        sam_variant: ``none | sam | asam | looksam | sam_k`` (config ``optimizer.sam.variant``).
        rho: SAM radius; ``None`` = 0.05 (SAM, LookSAM, SAM-k) or 0.5 (ASAM).
        **kw: options of the base optimiser (``momentum``, ``betas``, ...) and of the
            variant (``k``, ``alpha``, ``looksam_global``, ``asam_eta``, ``sam_start_frac``,
            ``total_steps``, ...). An unknown option is a ``ValueError``.
    """
    base_cls = _lookup(name, BASE_OPTIMIZERS, "optimizer name")
    variant_cls = _lookup(sam_variant, SAM_VARIANTS, "sam_variant")
    base_options = set(inspect.signature(base_cls).parameters) - {"params", "lr", "weight_decay"}
    valid = sorted(base_options | set(_VARIANT_OPTIONS[sam_variant]))
    for option in kw:
        if option not in valid:
            raise ValueError(
                f"Unknown option {option!r} for optimizer {name!r} with sam_variant "
                f"{sam_variant!r}{did_you_mean(option, valid)}; valid options: {valid}"
            )
    if isinstance(model_or_params, nn.Module):
        params: Any = [(n, p) for n, p in model_or_params.named_parameters() if p.requires_grad]
    else:
        params = model_or_params
    if variant_cls is None:
        if rho is not None:
            raise ValueError(f"rho={rho!r} needs a SAM variant but sam_variant is 'none'")
        return base_cls(params, lr=lr, weight_decay=weight_decay, **kw)
    adaptive = sam_variant == "asam"
    return variant_cls(params, base_cls, rho, adaptive, lr=lr, weight_decay=weight_decay, **kw)


def _lookup(value: str, table: dict[str, Any], what: str) -> Any:
    if value not in table:
        choices = list(table)
        raise ValueError(
            f"Unknown {what} {value!r}{did_you_mean(str(value), choices)}; expected one of {choices}"
        )
    return table[value]
