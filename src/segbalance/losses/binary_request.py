"""What a loss term asks of the fused binary core (:mod:`segbalance.losses.binary`), and
the per-sample sums it gets back; a compound merges its terms' requests into one call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from torch import Tensor


class BinarySums(NamedTuple):
    """Per-sample sums. ``ce``/``ce_aux``: ``(B,)``; region sums ``(B, K)`` with channel order
    ``[background, foreground]`` when K = 2 (``both``), ``[foreground]`` when K = 1;
    ``total``: ``(B, 1)`` sum of the region factor. ``ground`` and ``total`` are constants."""

    ce: Tensor | None
    ce_aux: Tensor | None
    inter: Tensor | None
    pred: Tensor | None
    pred_sq: Tensor | None
    ground: Tensor | None
    total: Tensor | None


@dataclass(frozen=True, eq=False)
class BinaryRequest:
    """What one loss term needs from the binary core.

    Tensors are compared by identity when requests are merged (a compound's terms that use
    the same selection mask share one call).

    Attributes:
        ce: sum of the voxel CE (times the voxel factor and ``ce_mask``).
        offset: logit offset of the CE (logit adjustment); the region sums use raw logits.
        ce_mask: extra ``(B, N)`` factor of the CE sums (top-K selection), or None.
        aux: ``(B, N)`` 0/1 region indicator for ``ce_aux``, or None.
        region: overlap sums.
        squared: also ``sum fr p^2``.
        both: background channel too (K = 2).
        region_mask: extra ``(B, N)`` factor of the region sums, or None.
        region_counts: top-k region: per sample, the number of voxels with the largest
            ``v = d (1 - 2y)`` (the largest CE) that the region sums cover, or None (all).
        modulate: pm_dice gamma: the region factor is multiplied by ``|y - sg(p)|^gamma``.
    """

    ce: bool = False
    offset: float = 0.0
    ce_mask: Tensor | None = None
    aux: Tensor | None = None
    region: bool = False
    squared: bool = False
    both: bool = False
    region_mask: Tensor | None = None
    region_counts: tuple[int, ...] | None = None
    modulate: float | None = None

    def covers(self, other: BinaryRequest) -> bool:
        """True if this request's result also answers ``other``."""
        if other.ce and not (
            self.ce
            and self.offset == other.offset
            and self.ce_mask is other.ce_mask
            and (other.aux is None or self.aux is other.aux)
        ):
            return False
        return not (
            other.region
            and not (
                self.region
                and (self.squared or not other.squared)
                and (self.both or not other.both)
                and self.region_mask is other.region_mask
                and self.region_counts == other.region_counts
                and self.modulate == other.modulate
            )
        )

    def merge(self, other: BinaryRequest) -> BinaryRequest | None:
        """One request answering both, or None when they conflict (different CE / masks)."""
        if (
            self.ce
            and other.ce
            and (
                self.offset != other.offset
                or self.ce_mask is not other.ce_mask
                or (self.aux is not None and other.aux is not None and self.aux is not other.aux)
            )
        ):
            return None
        if (
            self.region
            and other.region
            and (
                self.region_mask is not other.region_mask
                or self.region_counts != other.region_counts
                or self.modulate != other.modulate
            )
        ):
            return None
        ce_src = self if self.ce else other
        reg_src = self if self.region else other
        return BinaryRequest(
            ce=self.ce or other.ce,
            offset=ce_src.offset,
            ce_mask=ce_src.ce_mask,
            aux=self.aux if self.aux is not None else other.aux,
            region=self.region or other.region,
            squared=self.squared or other.squared,
            both=self.both or other.both,
            region_mask=reg_src.region_mask,
            region_counts=reg_src.region_counts,
            modulate=reg_src.modulate,
        )
