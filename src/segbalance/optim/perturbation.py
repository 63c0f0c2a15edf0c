"""The SAM / ASAM perturbation e(w) and the parameter roles it depends on.

Kept apart from the optimiser classes so that the formula (METHODS §8.1-8.2) can be
read in one place and tested on its own.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import Tensor

# Added to the gradient norm so that a zero gradient gives a zero perturbation (Foret et al.).
NORM_EPS = 1e-12


def check_rho(value: Any, where: str = "rho") -> float:
    """Return ``value`` as a float after checking that it is a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"Expected {where} to be a number >= 0 but got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"Expected {where} to be a finite number >= 0 but got {value!r}")
    return float(value)


def is_norm_or_bias(name: str | None, param: Tensor) -> bool:
    """True for biases and normalisation-layer parameters.

    Named: the name ends with ``bias``, or the tensor is 1-D (norm scales/shifts are 1-D;
    the timm ``param_groups_weight_decay`` convention). Unnamed: every 1-D tensor.
    """
    if name is not None and name.endswith("bias"):
        return True
    return param.ndim <= 1


def is_asam_weight(name: str | None, param: Tensor) -> bool:
    """Whether ASAM's ``T_w = |w| + eta`` applies (otherwise ``T_w = 1``).

    Named: ``"weight" in name``, the SamsungLabs/ASAM rule (norm-layer scales included,
    biases and norm shifts not). Unnamed: tensors with more than one dimension.
    """
    if name is not None:
        return "weight" in name
    return param.ndim > 1


def _asam_scale(group: dict[str, Any], name: str | None, param: Tensor) -> Tensor | None:
    """``T_w`` for one parameter, or ``None`` where it is the identity."""
    if not group["adaptive"]:
        return None
    if group["asam_exclude_bias"] and not is_asam_weight(name, param):
        return None
    return param.detach().abs().add_(group["asam_eta"])


def global_norm(tensors: list[Tensor]) -> Tensor:
    """L2 norm over all tensors, accumulated in at least float32, on the first one's device."""
    device = tensors[0].device
    dtype = torch.float32
    for t in tensors:
        dtype = torch.promote_types(dtype, t.dtype)
    norms = [torch.linalg.vector_norm(t, dtype=dtype).to(device) for t in tensors]
    return torch.linalg.vector_norm(torch.stack(norms))


@torch.no_grad()
def compute_perturbation(param_groups: list[dict[str, Any]]) -> list[tuple[Tensor, Tensor]]:
    """Return ``[(param, e)]`` with ``e = rho * T_w^2 g / ||T_w g||`` (``T_w = 1`` for SAM).

    One global norm over every perturbed parameter of every group; each group scales by
    its own ``rho``. Parameters without a gradient, and norm/bias parameters when the
    group has ``exclude_norm_bias=True``, get no perturbation and do not enter the norm.
    ``e`` has the shape and dtype of its parameter. A non-finite gradient norm gives no
    perturbation at all (an empty list, with a ``RuntimeWarning``).
    """
    terms: list[tuple[dict[str, Any], Tensor, Tensor | None, Tensor]] = []
    for group in param_groups:
        names = group.get("param_names") or [None] * len(group["params"])
        for name, param in zip(names, group["params"], strict=True):
            if param.grad is None:
                continue
            if group["exclude_norm_bias"] and is_norm_or_bias(name, param):
                continue
            scale = _asam_scale(group, name, param)
            scaled_grad = param.grad if scale is None else param.grad * scale
            terms.append((group, param, scale, scaled_grad))
    if not terms:
        raise ValueError(
            "Expected gradients on the parameters before first_step() but found none "
            "(call loss.backward() first)"
        )
    denominator = global_norm([t[3] for t in terms]) + NORM_EPS
    if not bool(torch.isfinite(denominator)):
        # never move the weights along a NaN/inf direction (sam_step skips such steps)
        warnings.warn(
            "SAM: non-finite gradient norm; no perturbation applied (skip this step)",
            RuntimeWarning,
            stacklevel=3,
        )
        return []
    perturbation = []
    for group, param, scale, scaled_grad in terms:
        direction = scaled_grad if scale is None else scaled_grad * scale
        perturbation.append((param, direction * (group["rho"] / denominator).to(param)))
    return perturbation
