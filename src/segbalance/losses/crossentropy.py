"""Voxel-wise losses: ``ce``, ``la_ce``, ``focal``, ``topk_ce`` (METHODS §1.1, §1.6, §1.7, §2)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from segbalance.losses.base import SegLoss, spec_defaults
from segbalance.losses.binary_focal import binary_focal_sum
from segbalance.losses.binary_request import BinaryRequest
from segbalance.losses.binary_topk import topk_ce_binary
from segbalance.losses.inputs import LossInputs
from segbalance.losses.topk import top_k_mask

_CE = spec_defaults("ce")
_LA = spec_defaults("la_ce")
_FOCAL = spec_defaults("focal")
_TOPK = spec_defaults("topk_ce")


def _per_class_vector(value: Any, n_classes: int, name: str, inputs: LossInputs) -> Tensor:
    vec = torch.as_tensor(value, dtype=inputs.dtype, device=inputs.device).flatten()
    if vec.numel() != n_classes:
        raise ValueError(
            f"{name}: expected {n_classes} values (one per class) but got {vec.numel()}"
        )
    return vec


class CrossEntropyLoss(SegLoss):
    """``ce``: BCE with logits (C = 1) or softmax CE (C >= 2), voxel mean (METHODS §1.1).

    Options: ``class_weights`` (length C, C >= 2; weighted mean as PyTorch),
    ``pos_weight`` (C = 1), ``adaptive_pos_weight`` (deep_pipe adaptive WCE, C = 1:
    ``beta = (N - sum p) / max(sum p, 1)`` from predicted probabilities, not detached).
    """

    name = "ce"

    def __init__(
        self,
        *,
        class_weights: Sequence[float] | None = _CE["class_weights"],
        pos_weight: float | None = _CE["pos_weight"],
        adaptive_pos_weight: bool = _CE["adaptive_pos_weight"],
        ignore_index: int | None = None,
        voxel_weighting: str | None = None,
    ) -> None:
        super().__init__(ignore_index=ignore_index, voxel_weighting=voxel_weighting)
        if pos_weight is not None and adaptive_pos_weight:
            raise ValueError("pos_weight: expected None when adaptive_pos_weight=True")
        self.class_weights = None if class_weights is None else [float(c) for c in class_weights]
        self.pos_weight = None if pos_weight is None else float(pos_weight)
        self.adaptive_pos_weight = bool(adaptive_pos_weight)

    @property
    def _plain(self) -> bool:
        return (
            self.class_weights is None and self.pos_weight is None and not self.adaptive_pos_weight
        )

    def binary_request(self, inputs: LossInputs) -> BinaryRequest | None:
        return BinaryRequest(ce=True) if self._plain else None

    def compute(self, inputs: LossInputs) -> Tensor:
        if inputs.fast_binary and self._plain:
            # C <= 2: fused BCE on one logit (a two-class softmax CE is BCE(z_1 - z_0))
            sums = inputs.binary_sums(BinaryRequest(ce=True))
            return sums.ce.sum() / inputs.n_valid.clamp_min(1.0)  # type: ignore[union-attr]
        if inputs.binary:
            if self.class_weights is not None:
                raise ValueError("class_weights: expected None for C=1 (use pos_weight)")
            if self.adaptive_pos_weight:
                return self._adaptive_wce(inputs)
            if self.pos_weight is not None:
                z, y = inputs.logits[:, 0], inputs.target_f[:, 0]
                pw = torch.tensor(self.pos_weight, dtype=inputs.dtype, device=inputs.device)
                ce = F.binary_cross_entropy_with_logits(z, y, pos_weight=pw, reduction="none")
                return inputs.voxel_mean(ce)
            return inputs.voxel_mean(inputs.voxel_ce)
        if self.pos_weight is not None or self.adaptive_pos_weight:
            raise ValueError("pos_weight/adaptive_pos_weight: expected C=1 (binary) logits")
        if self.class_weights is not None:
            cw = _per_class_vector(self.class_weights, inputs.n_classes, "class_weights", inputs)
            cw_voxel = cw[inputs.target]
            num = inputs.voxel_ce * cw_voxel
            if inputs.voxel_factor is not None:
                num = num * inputs.voxel_factor
            den = cw_voxel if inputs.valid_f is None else cw_voxel * inputs.valid_f
            return num.sum() / den.sum().clamp_min(torch.finfo(inputs.dtype).tiny)
        fused = inputs.__dict__.get("_region_sums")
        if fused is not None and fused.ce is not None:
            # a compound already computed sum(f CE) with its region sums: reuse it
            return fused.ce / inputs.n_valid.clamp_min(1.0)
        if inputs.voxel_factor is None and "log_probs" in inputs.__dict__:
            return F.nll_loss(inputs.log_probs, inputs.target)
        if inputs.voxel_factor is None:
            return F.cross_entropy(inputs.logits, inputs.target)
        return inputs.voxel_mean(inputs.voxel_ce)

    def region_needs(self) -> dict[str, bool] | None:
        plain = self.class_weights is None and self.pos_weight is None
        return {"cross_entropy": True} if plain and not self.adaptive_pos_weight else None

    def _adaptive_wce(self, inputs: LossInputs) -> Tensor:
        z, y = inputs.logits[:, 0], inputs.target_f[:, 0]
        p = torch.sigmoid(z)
        if inputs.valid_f is not None:
            p = p * inputs.valid_f
        # clamp at one voxel: an all-background prediction would make beta infinite (Assumed)
        beta = (inputs.n_valid - p.sum()) / p.sum().clamp_min(1.0)
        per_voxel = beta * y * F.softplus(-z) + (1 - y) * F.softplus(z)
        return inputs.voxel_mean(per_voxel)


def prior_offsets(prior: Any, n_classes: int, tau: float, inputs: LossInputs) -> Tensor:
    """Logit offsets of logit adjustment: ``(1,)`` delta for C = 1, ``(C,)`` tau*log(pi) else."""
    values = _prior_values(prior)
    if n_classes == 1:
        if len(values) == 2:
            values = [values[1]]  # (background, foreground) -> foreground
        if len(values) != 1:
            raise ValueError(
                f"prior: expected one foreground prior (or [bg, fg]) for C=1 but got {len(values)}"
            )
        pi = values[0]
        return torch.tensor(
            [tau * math.log(pi / (1.0 - pi))], dtype=inputs.dtype, device=inputs.device
        )
    if len(values) != n_classes:
        raise ValueError(
            f"prior: expected {n_classes} class priors (one per class, incl. background) "
            f"but got {len(values)}"
        )
    pi = torch.tensor(values, dtype=inputs.dtype, device=inputs.device)
    return tau * torch.log(pi)


def binary_offset(prior: Any, inputs: LossInputs, tau: float) -> float:
    """The single logit offset of logit adjustment for C <= 2 (validated like the offsets)."""
    prior_offsets(prior, inputs.n_classes, tau, inputs)  # shape checks and their messages
    values = _prior_values(prior)
    if inputs.n_classes == 1:
        pi = values[-1]  # a [bg, fg] pair gives the foreground prior
        return tau * math.log(pi / (1.0 - pi))
    return tau * (math.log(values[1]) - math.log(values[0]))


def _prior_values(prior: Any) -> list[float]:
    if isinstance(prior, Mapping):
        return [float(prior[k]) for k in sorted(prior, key=lambda k: int(k))]
    if isinstance(prior, (int, float)):
        return [float(prior)]
    return [float(v) for v in prior]


def validate_prior(prior: Any) -> None:
    """User-given prior: every value strictly inside (0, 1), else ``ValueError`` naming it."""
    if prior is None:
        raise ValueError(
            "prior: la_ce/balanced need the class prior (float for C=1, length-C sequence for "
            "C>=2); pass prior=... or train with a dataset whose prior is estimated"
        )
    try:
        values = _prior_values(prior)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"prior: expected a float or a sequence of floats but got {prior!r}"
        ) from exc
    bad = [v for v in values if not (0.0 < v < 1.0)]
    if bad or not values:
        raise ValueError(f"prior: expected values strictly inside (0, 1) but got {values}")


def clamp_estimated_prior(prior: Sequence[float]) -> list[float]:
    """Clamp an *estimated* prior to [1e-12, 1 - 1e-12], warning when a class had prior 0/1."""
    out = [min(max(float(v), 1e-12), 1.0 - 1e-12) for v in prior]
    if any(a != b for a, b in zip(out, prior, strict=True)):
        warnings.warn(f"estimated prior {list(prior)} clamped to {out}", stacklevel=2)
    return out


class LogitAdjustedCELoss(SegLoss):
    """``la_ce``: CE on ``z + tau*log(pi)`` (Menon et al.; binary: ``z + tau*log(pi/(1-pi))``).

    Inference uses the raw logits (METHODS §2).
    """

    name = "la_ce"

    def __init__(
        self,
        *,
        prior: float | Sequence[float] | Mapping[str, float] | None = _LA["prior"],
        tau: float = _LA["tau"],
        ignore_index: int | None = None,
        voxel_weighting: str | None = None,
    ) -> None:
        super().__init__(ignore_index=ignore_index, voxel_weighting=voxel_weighting)
        validate_prior(prior)
        self.prior = prior
        self.tau = float(tau)

    def binary_request(self, inputs: LossInputs) -> BinaryRequest:
        return BinaryRequest(ce=True, offset=binary_offset(self.prior, inputs, self.tau))

    def compute(self, inputs: LossInputs) -> Tensor:
        if inputs.fast_binary:
            # one logit d + delta: delta = tau log(pi / (1 - pi)) or tau (log pi_1 - log pi_0)
            sums = inputs.binary_sums(self.binary_request(inputs))
            return sums.ce.sum() / inputs.n_valid.clamp_min(1.0)  # type: ignore[union-attr]
        offsets = prior_offsets(self.prior, inputs.n_classes, self.tau, inputs)
        shape = (1, -1) + (1,) * (inputs.logits.ndim - 2)
        adjusted = inputs.logits + offsets.view(shape)
        if inputs.binary:
            ce = F.binary_cross_entropy_with_logits(
                adjusted[:, 0], inputs.target_f[:, 0], reduction="none"
            )
        else:
            ce = F.cross_entropy(adjusted, inputs.target, reduction="none")
        return inputs.voxel_mean(ce)


class FocalLoss(SegLoss):
    """``focal``: ``alpha_t (1 - p_t)^gamma CE`` (Lin et al.), voxel mean (METHODS §1.6).

    C >= 2: scalar ``alpha`` weighs every foreground class and ``1 - alpha`` the background;
    a length-C ``alpha`` gives one weight per class. ``alpha=None``: no class weighting.
    """

    name = "focal"

    def __init__(
        self,
        *,
        gamma: float = _FOCAL["gamma"],
        alpha: float | Sequence[float] | None = _FOCAL["alpha"],
        ignore_index: int | None = None,
        voxel_weighting: str | None = None,
    ) -> None:
        super().__init__(ignore_index=ignore_index, voxel_weighting=voxel_weighting)
        if gamma < 0:
            raise ValueError(f"gamma: expected >= 0 but got {gamma}")
        self.gamma = float(gamma)
        self.alpha = alpha if alpha is None or isinstance(alpha, (int, float)) else list(alpha)

    def _binary_alpha(self, inputs: LossInputs) -> tuple[float, float] | None:
        if self.alpha is None:
            return None
        if isinstance(self.alpha, (int, float)):
            return 1.0 - float(self.alpha), float(self.alpha)
        if inputs.binary:
            raise ValueError("alpha: expected a float for C=1 logits")
        vec = [float(a) for a in self.alpha]
        if len(vec) != 2:
            raise ValueError(f"alpha: expected 2 values (one per class) but got {len(vec)}")
        return vec[0], vec[1]

    def compute(self, inputs: LossInputs) -> Tensor:
        if inputs.fast_binary:
            total = binary_focal_sum(
                inputs.logits,
                inputs.binary_y,
                gamma=self.gamma,
                alpha=self._binary_alpha(inputs),
                factor=inputs.flat_factor,
            )
            return total / inputs.n_valid.clamp_min(1.0)
        if inputs.binary:
            z, y = inputs.logits[:, 0], inputs.target_f[:, 0]
            ce = F.binary_cross_entropy_with_logits(z, y, reduction="none")
            # (1 - p_t)^gamma = exp(gamma * logsigmoid(-(2y-1) z)): finite for any logit
            loss = torch.exp(self.gamma * F.logsigmoid(-(2 * y - 1) * z)) * ce
            if self.alpha is not None:
                if not isinstance(self.alpha, (int, float)):
                    raise ValueError("alpha: expected a float for C=1 logits")
                loss = loss * (y * self.alpha + (1 - y) * (1 - self.alpha))
            return inputs.voxel_mean(loss)
        log_pt = inputs.log_probs.gather(1, inputs.target.unsqueeze(1))[:, 0]
        one_minus_pt = (-torch.expm1(log_pt)).clamp_min(0.0)
        loss = -(one_minus_pt**self.gamma) * log_pt
        if self.alpha is not None:
            if isinstance(self.alpha, (int, float)):
                alpha = torch.full((inputs.n_classes,), float(self.alpha), dtype=inputs.dtype)
                alpha[0] = 1.0 - float(self.alpha)
                alpha = alpha.to(inputs.device)
            else:
                alpha = _per_class_vector(self.alpha, inputs.n_classes, "alpha", inputs)
            loss = loss * alpha[inputs.target]
        return inputs.voxel_mean(loss)


class TopKCELoss(SegLoss):
    """``topk_ce``: mean of the k = max(1, floor(K% of valid voxels)) largest voxel CEs.

    The pool is the whole batch (nnU-Net ``TopKLoss``); ``per_sample=True`` selects per
    sample and averages the sample means. Voxel weights multiply the per-voxel CE before
    the selection; ignored voxels are never selected (METHODS §1.7).
    """

    name = "topk_ce"

    def __init__(
        self,
        *,
        k: float = _TOPK["k"],
        per_sample: bool = _TOPK["per_sample"],
        ignore_index: int | None = None,
        voxel_weighting: str | None = None,
    ) -> None:
        super().__init__(ignore_index=ignore_index, voxel_weighting=voxel_weighting)
        self.k = checked_percent(k)
        self.per_sample = bool(per_sample)

    def compute(self, inputs: LossInputs) -> Tensor:
        if inputs.fast_binary:
            return self._binary(inputs)
        loss = inputs.voxel_ce
        if inputs.weight is not None:
            loss = loss * inputs.weight
        if inputs.valid is not None:
            loss = loss.masked_fill(~inputs.valid, float("-inf"))
        if not self.per_sample:
            n_valid = int(inputs.n_valid.item())
            if n_valid == 0:
                return _zero_like_graph(inputs)
            return _topk_mean(loss.reshape(-1), n_valid, self.k)
        means = []
        for b in range(loss.shape[0]):
            n_valid = loss[b].numel() if inputs.valid is None else int(inputs.valid[b].sum())
            if n_valid:
                means.append(_topk_mean(loss[b].reshape(-1), n_valid, self.k))
        if not means:
            return _zero_like_graph(inputs)
        return torch.stack(means).mean()

    def _binary(self, inputs: LossInputs) -> Tensor:
        """C <= 2: exact selection, then the CE of the selected voxels only."""
        if self.per_sample:
            counts = [top_k_count(self.k, n) if n else 0 for n in inputs.row_valid_counts]
        else:
            n_valid = int(inputs.n_valid.item())
            counts = [top_k_count(self.k, n_valid) if n_valid else 0]
        if not any(counts):
            return _zero_like_graph(inputs)
        return topk_ce_binary(inputs, counts, self.per_sample)


def checked_percent(k: float) -> float:
    """The top-K percentage ``k`` as float, ``ValueError`` outside (0, 100]."""
    if not (0 < float(k) <= 100):
        raise ValueError(f"k: expected a percentage in (0, 100] but got {k}")
    return float(k)


def top_k_count(percent: float, n_valid: int) -> int:
    """``max(1, floor(percent * n_valid / 100))`` (METHODS §1.7, §4)."""
    return max(1, math.floor(percent * n_valid / 100.0 + 1e-9))


def _zero_like_graph(inputs: LossInputs) -> Tensor:
    # every voxel ignored: a zero loss that still backpropagates (zero gradients)
    return inputs.logits.new_zeros(()).requires_grad_(inputs.logits.requires_grad)


def _topk_mean(values: Tensor, n_valid: int, percent: float) -> Tensor:
    k = top_k_count(percent, n_valid)
    mask = top_k_mask(values.detach().reshape(1, -1), [k]).view_as(values)
    return torch.where(mask, values, 0.0).sum() / k
