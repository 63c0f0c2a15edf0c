"""Validated loss inputs with lazily shared activations.

Every loss reads its tensors from one :class:`LossInputs`, so a compound such as
``dice+ce`` computes the softmax / log-softmax / one-hot once for all its terms.
"""

from __future__ import annotations

import copy
from functools import cached_property

import torch
import torch.nn.functional as F
from torch import Tensor

from segbalance.losses.binary import binary_logit, binary_sums
from segbalance.losses.binary_request import BinaryRequest, BinarySums
from segbalance.losses.fused import RegionSums, region_sums


def _shape(t: Tensor) -> tuple[int, ...]:
    return tuple(int(s) for s in t.shape)


class LossInputs:
    """Logits, labels, ignore mask and voxel weights of one loss call, validated once.

    Attributes:
        logits: ``(B, C, *S)`` in the compute dtype (float32, or float64 for float64 input).
        target: int64 ``(B, *S)``; ignored voxels mapped to class 0.
        valid: bool ``(B, *S)`` or ``None`` when nothing is ignored.
        weight: ``(B, *S)`` voxel weights in the compute dtype, or ``None``.
        n_classes: C (1 = binary sigmoid, >= 2 softmax).
    """

    def __init__(
        self,
        logits: Tensor,
        target: Tensor,
        weight: Tensor | None = None,
        ignore_index: int | None = None,
    ) -> None:
        if not isinstance(logits, Tensor) or not logits.is_floating_point():
            raise ValueError(
                f"logits: expected a float tensor (B, C, *spatial) but got "
                f"{type(logits).__name__}{'' if not isinstance(logits, Tensor) else ' of dtype ' + str(logits.dtype)}"
            )
        if logits.ndim not in (4, 5):
            raise ValueError(
                "logits: expected shape (B, C, *spatial) with 2 or 3 spatial dims but got "
                f"shape {_shape(logits)}"
            )
        if not isinstance(target, Tensor):
            raise ValueError(f"target: expected a tensor but got {type(target).__name__}")
        dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
        self.dtype = dtype
        self.logits = logits.to(dtype)
        self.n_classes = int(logits.shape[1])
        batch_spatial = (int(logits.shape[0]), *_shape(logits)[2:])
        if target.ndim == logits.ndim and target.shape[1] == 1:
            target = target[:, 0]
        if _shape(target) != batch_spatial:
            raise ValueError(
                f"target: expected shape {batch_spatial} (B, *S) or "
                f"{(batch_spatial[0], 1, *batch_spatial[1:])} (B, 1, *S) to match logits "
                f"{_shape(logits)} but got {_shape(target)}"
            )
        if target.device != logits.device:
            raise ValueError(
                f"target: expected device {logits.device} (as logits) but got {target.device}"
            )
        target = self._integer_labels(target)
        self.valid: Tensor | None = None
        if ignore_index is not None:
            valid = target != int(ignore_index)
            if not bool(valid.all()):
                self.valid = valid
                target = torch.where(valid, target, torch.zeros_like(target))
        self.target = target
        self._check_label_range(target, ignore_index)
        self.weight = self._voxel_weight(weight, batch_spatial)

    # -- validation ---------------------------------------------------------------------
    def _integer_labels(self, target: Tensor) -> Tensor:
        if target.dtype == torch.bool:
            return target.long()
        if target.is_floating_point():
            if not bool((target == torch.round(target)).all()):
                raise ValueError(
                    "target: expected integer labels (or floats equal to whole numbers such as "
                    "0/1) but got non-integer values"
                )
            return target.long()
        if target.is_complex():
            raise ValueError(f"target: expected integer labels but got dtype {target.dtype}")
        return target.long()

    def _check_label_range(self, target: Tensor, ignore_index: int | None) -> None:
        if target.numel() == 0:
            return
        upper = 1 if self.n_classes == 1 else self.n_classes - 1
        # C <= 2: check the float labels the binary core needs anyway (half the bytes of
        # int64); exact for the in-range values 0 and 1
        checked = self.binary_y if self.fast_binary else target
        lo_t, hi_t = torch.aminmax(checked)  # one pass instead of min() and max()
        if not (float(lo_t) < 0 or float(hi_t) > upper):
            return
        lo, hi = (int(v) for v in torch.aminmax(target))  # exact values for the message
        allowed = "{0, 1} (binary, C=1)" if self.n_classes == 1 else f"[0, {self.n_classes})"
        extra = "" if ignore_index is None else f" or ignore_index={ignore_index}"
        raise ValueError(
            f"target: expected labels in {allowed}{extra} but got values in [{lo}, {hi}]"
        )

    def _voxel_weight(self, weight: Tensor | None, batch_spatial: tuple[int, ...]) -> Tensor | None:
        if weight is None:
            return None
        if not isinstance(weight, Tensor):
            weight = torch.as_tensor(weight)
        if weight.ndim == len(batch_spatial) + 1 and weight.shape[1] == 1:
            weight = weight[:, 0]
        if _shape(weight) != batch_spatial:
            raise ValueError(
                f"weight: expected shape {(batch_spatial[0], 1, *batch_spatial[1:])} (B, 1, *S) "
                f"or {batch_spatial} (B, *S) but got {_shape(weight)}"
            )
        return weight.to(device=self.logits.device, dtype=self.dtype)

    def with_weight(self, weight: Tensor) -> LossInputs:
        """A copy with voxel weights ``weight`` ``(B, *S)``; activations computed so far stay shared.

        Only the weight-dependent caches are dropped, so a compound whose terms differ in
        voxel weighting still runs one softmax.
        """
        other = copy.copy(self)
        for key in ("voxel_factor", "factor_total", "_region_sums", "flat_factor", "_binary"):
            other.__dict__.pop(key, None)
        other.weight = weight.to(device=self.device, dtype=self.dtype)
        return other

    # -- shared quantities --------------------------------------------------------------
    @property
    def binary(self) -> bool:
        return self.n_classes == 1

    @property
    def fast_binary(self) -> bool:
        """C <= 2: the loss runs on one logit (z, or z_1 - z_0) in the fused binary core."""
        return self.n_classes <= 2

    @cached_property
    def binary_y(self) -> Tensor:
        """Foreground labels as float ``(B, N)`` (C <= 2; ignored voxels are 0)."""
        return self.target.reshape(self.target.shape[0], -1).to(self.dtype)

    @cached_property
    def flat_factor(self) -> Tensor | None:
        """The voxel factor as ``(B, N)``, or None."""
        f = self.voxel_factor
        return None if f is None else f.reshape(f.shape[0], -1)

    @cached_property
    def binary_v(self) -> Tensor:
        """Detached ``v = d (1 - 2y)`` ``(B, N)`` (C <= 2), ``-inf`` at ignored voxels.

        The voxel BCE is ``softplus(v)``, increasing in v: top-K selection ranks v.
        """
        with torch.no_grad():
            d = binary_logit(self.logits.detach())
            v = torch.addcmul(d, d, self.binary_y, value=-2.0)
            if self.valid is not None:
                v.masked_fill_(~self.valid.reshape(v.shape), float("-inf"))
            return v

    @cached_property
    def binary_voxel_ce(self) -> Tensor:
        """Detached per-voxel CE ``(B, N)`` of the binary logit (C <= 2), not weighted; 0 at
        ignored voxels."""
        with torch.no_grad():
            return F.softplus(self.binary_v)

    def binary_sums(self, request: BinaryRequest) -> BinarySums:
        """Fused binary sums (C <= 2) for ``request``, shared with earlier covering requests."""
        cache: list[tuple[BinaryRequest, BinarySums]] = self.__dict__.setdefault("_binary", [])
        for done, sums in cache:
            if done.covers(request):
                if request.region and done.both and not request.both:
                    # a covering call also scored the background: keep the foreground column
                    cols = [None if x is None else x[:, 1:] for x in sums[2:6]]
                    return sums._replace(
                        inter=cols[0], pred=cols[1], pred_sq=cols[2], ground=cols[3]
                    )
                return sums
        valid = None if self.valid is None else self.valid.reshape(self.valid.shape[0], -1)
        sums = binary_sums(
            self.logits, self.binary_y, request, factor=self.flat_factor, valid=valid
        )
        cache.append((request, sums))
        return sums

    @cached_property
    def valid_f(self) -> Tensor | None:
        """Ignore mask as float ``(B, *S)``, or None."""
        return None if self.valid is None else self.valid.to(self.dtype)

    @cached_property
    def voxel_factor(self) -> Tensor | None:
        """``mask * weight`` ``(B, *S)``: multiplies every voxel in every sum; None if all 1."""
        if self.weight is None:
            return self.valid_f
        if self.valid_f is None:
            return self.weight
        return self.weight * self.valid_f

    @cached_property
    def n_valid(self) -> Tensor:
        """Number of non-ignored voxels of the whole batch (0-d tensor, compute dtype)."""
        if self.valid is None:
            return torch.tensor(float(self.target.numel()), dtype=self.dtype, device=self.device)
        return self.valid.sum().to(self.dtype)

    @cached_property
    def row_valid_counts(self) -> list[int]:
        """Number of non-ignored voxels of each sample."""
        batch = int(self.target.shape[0])
        if self.valid is None:
            return [self.target[0].numel()] * batch
        return self.valid.reshape(batch, -1).sum(1).tolist()

    @property
    def device(self) -> torch.device:
        return self.logits.device

    @cached_property
    def target_f(self) -> Tensor:
        """Binary target as float ``(B, 1, *S)`` (C = 1 only)."""
        return self.target.unsqueeze(1).to(self.dtype)

    @cached_property
    def log_probs(self) -> Tensor:
        """``log_softmax`` over classes ``(B, C, *S)`` (C >= 2)."""
        return F.log_softmax(self.logits, dim=1)

    @cached_property
    def probs(self) -> Tensor:
        """Sigmoid (C = 1) or softmax (C >= 2) probabilities ``(B, C, *S)``."""
        if self.binary:
            return torch.sigmoid(self.logits)
        # exp of the cached log-softmax: one activation shared by CE and Dice terms
        return self.log_probs.exp()

    @cached_property
    def onehot(self) -> Tensor:
        """Targets per channel ``(B, C, *S)``: the float label for C = 1, one-hot for C >= 2."""
        if self.binary:
            return self.target_f
        oh = F.one_hot(self.target, self.n_classes)
        return oh.movedim(-1, 1).to(self.dtype)

    @cached_property
    def voxel_ce(self) -> Tensor:
        """Per-voxel (binary) cross-entropy ``(B, *S)`` (not weighted, not masked)."""
        if self.binary:
            return F.binary_cross_entropy_with_logits(
                self.logits[:, 0], self.target_f[:, 0], reduction="none"
            )
        if "log_probs" in self.__dict__:
            return -self.log_probs.gather(1, self.target.unsqueeze(1))[:, 0]
        return F.cross_entropy(self.logits, self.target, reduction="none")

    def region_sums(self, *, squared: bool = False, cross_entropy: bool = False) -> RegionSums:
        """Fused per-(sample, class) overlap sums, computed once and shared by all terms.

        A later call that needs more (``squared`` / ``cross_entropy``) recomputes with the
        union; a compound asks for the union up front so that happens once.
        """
        cached: RegionSums | None = self.__dict__.get("_region_sums")
        has_sq = cached is not None and (cached.pred_sq is not None or not squared)
        if has_sq and (cached.ce is not None or not cross_entropy):  # type: ignore[union-attr]
            return cached  # type: ignore[return-value]
        if cached is not None:
            squared = squared or cached.pred_sq is not None
            cross_entropy = cross_entropy or cached.ce is not None
        sums = region_sums(
            self.logits,
            self.target,
            self.voxel_factor,
            squared=squared,
            cross_entropy=cross_entropy,
        )
        self.__dict__["_region_sums"] = sums
        return sums

    @cached_property
    def factor_total(self) -> Tensor:
        """Per-sample sum of the voxel factor ``(B, 1)`` (voxel count when there is none)."""
        f = self.voxel_factor
        if f is None:
            n = self.target[0].numel()
            return torch.full(
                (self.target.shape[0], 1), float(n), dtype=self.dtype, device=self.device
            )
        return f.reshape(f.shape[0], -1).sum(1, keepdim=True)

    def voxel_mean(self, per_voxel: Tensor) -> Tensor:
        """METHODS §0 voxel-wise reduction ``sum(m w l) / sum(m)`` of a ``(B, *S)`` tensor."""
        factor = self.voxel_factor
        total = per_voxel.sum() if factor is None else (per_voxel * factor).sum()
        return total / self.n_valid.clamp_min(1.0)
