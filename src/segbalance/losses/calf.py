"""``calf``: Conditionally Adaptive Loss Function (arXiv 2504.04458; METHODS §7).

The branch (a transformed CE or BCE + Dice) is chosen from the skewness and excess
kurtosis of the foreground amounts. ``calf_mode="dataset"`` (default) fixes it once from
per-case foreground fractions; ``calf_mode="faithful"`` recomputes it per batch from
per-sample foreground voxel counts, as the authors' code does per batch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from segbalance.losses.base import SegLoss, spec_defaults
from segbalance.losses.binary_request import BinaryRequest
from segbalance.losses.inputs import LossInputs
from segbalance.stats import CALF_BRANCHES, calf_branch, calf_select, excess_kurtosis, skewness

_CALF = spec_defaults("calf")
EPS = 1e-7
# Clamping p to [1e-7, 1 - 1e-7] equals clamping the logit to +-L (METHODS §7).
LOGIT_LIMIT = math.log((1 - EPS) / EPS)
# Offsets that make the three transform branches non-negative with minimum 0.
OFFSETS = {
    "fisher": math.atanh(1 - EPS),
    "logit": LOGIT_LIMIT,
    "arcsine": math.asin(math.sqrt(1 - EPS)),
}


def branch_voxel_loss(branch: str, z: Tensor, y: Tensor, offset: bool) -> Tensor:
    """Per-voxel loss of one transform/BCE branch from binary logits ``z`` and labels ``y``."""
    if branch in ("log10_bce", "ln_bce"):
        zz = z if offset else z.clamp(-LOGIT_LIMIT, LOGIT_LIMIT)
        bce = F.binary_cross_entropy_with_logits(zz, y, reduction="none")
        return bce / math.log(10.0) if branch == "log10_bce" else bce
    zc = z.clamp(-LOGIT_LIMIT, LOGIT_LIMIT)
    if branch == "fisher":
        p = torch.sigmoid(zc)
        atanh_p = 0.5 * (torch.log1p(p) - F.logsigmoid(-zc))
        atanh_1mp = 0.5 * (torch.log1p(1 - p) - F.logsigmoid(zc))
        loss = -(y * atanh_p + (1 - y) * atanh_1mp)
    elif branch == "logit":
        loss = -(2 * y - 1) * zc
    elif branch == "arcsine":
        # arcsin(sqrt(sigmoid(z))) = arctan(exp(z/2))
        loss = -(y * torch.atan(torch.exp(zc / 2)) + (1 - y) * torch.atan(torch.exp(-zc / 2)))
    else:
        raise ValueError(f"branch: expected one of {list(CALF_BRANCHES)} but got {branch!r}")
    return loss + OFFSETS[branch] if offset else loss


class CALFLoss(SegLoss):
    """``calf``: CALF with the branch fixed per dataset (default) or chosen per batch.

    In faithful mode an explicit ``branch=`` fixes the branch (no offsets); without it the
    branch is recomputed for every batch.

    Options: ``calf_mode`` (``"dataset"`` | ``"faithful"``), ``fractions`` (per-case
    foreground fractions; for C >= 2 a mapping ``{class: fractions}``) or ``branch`` (a
    name, or ``{class: name}`` for C >= 2). C >= 2 is one-vs-rest per foreground class on
    the softmax probabilities, averaged over classes. Voxel weights are rejected.
    """

    name = "calf"

    def __init__(
        self,
        *,
        calf_mode: Literal["dataset", "faithful"] = _CALF["calf_mode"],
        fractions: Sequence[float] | Mapping[str, Sequence[float]] | None = _CALF["fractions"],
        branch: str | Mapping[str, str] | None = _CALF["branch"],
        ignore_index: int | None = None,
        voxel_weighting: str | None = None,
    ) -> None:
        super().__init__(ignore_index=ignore_index, voxel_weighting=voxel_weighting)
        if calf_mode not in ("dataset", "faithful"):
            raise ValueError(f"calf_mode: expected 'dataset' or 'faithful' but got {calf_mode!r}")
        self.calf_mode = calf_mode
        self.fractions = fractions
        if branch is None and calf_mode == "dataset":
            if fractions is None:
                raise ValueError(
                    "fractions/branch: calf_mode='dataset' needs fractions= (per-case "
                    "foreground fractions) or branch= (one of " + ", ".join(CALF_BRANCHES) + ")"
                )
            branch = _branches_from_fractions(fractions)
        for name in branch.values() if isinstance(branch, Mapping) else [branch]:
            if name is not None and name not in CALF_BRANCHES:
                raise ValueError(f"branch: expected one of {list(CALF_BRANCHES)} but got {name!r}")
        self.branch = dict(branch) if isinstance(branch, Mapping) else branch

    def branch_for(self, cls: int) -> str | None:
        """The fixed branch of foreground class ``cls`` (None in faithful mode)."""
        if isinstance(self.branch, dict):
            key = str(cls) if str(cls) in self.branch else cls
            if key not in self.branch:
                raise ValueError(f"branch: expected an entry for class {cls} but got {self.branch}")
            return self.branch[key]
        return self.branch

    def compute(self, inputs: LossInputs) -> Tensor:
        offset = self.calf_mode == "dataset"
        fused = _fused_branch(inputs, self.branch_for(1)) if offset and inputs.fast_binary else None
        if fused is not None:
            return fused
        n_fg = 1 if inputs.binary else inputs.n_classes - 1
        terms = []
        for cls in range(1, n_fg + 1):
            z, y = _one_vs_rest(inputs, cls)
            branch = self.branch_for(cls)
            if branch is None:  # faithful mode: statistic of this batch's foreground counts
                counts = y.flatten(1).sum(1).detach().cpu().double().numpy()
                branch, _ = calf_branch(skewness(counts), excess_kurtosis(counts))
            terms.append(self._branch_loss(inputs, branch, z, y, offset))
        return torch.stack(terms).mean()

    def _branch_loss(self, inputs: LossInputs, branch: str, z: Tensor, y: Tensor, offset: bool):
        if branch != "bce_dice":
            return inputs.voxel_mean(branch_voxel_loss(branch, z, y, offset))
        p = torch.sigmoid(z)
        f = inputs.valid_f
        if offset:  # project default: ce + dice (METHODS §1.3, per sample)
            bce = inputs.voxel_mean(F.binary_cross_entropy_with_logits(z, y, reduction="none"))
            pf = p if f is None else p * f
            yf = y if f is None else y * f
            dims = list(range(1, z.ndim))
            inter, psum, ysum = (pf * y).sum(dims), pf.sum(dims), yf.sum(dims)
            dice = (2 * inter + 1e-5) / (psum + ysum + 1e-5)
            return bce + 1 - dice.mean()
        # faithful: clamped BCE and one Dice over the whole batch, smooth 1e-7
        bce = inputs.voxel_mean(branch_voxel_loss("ln_bce", z, y, offset=False))
        pf = p if f is None else p * f
        yf = y if f is None else y * f
        dice = (2 * (pf * y).sum() + EPS) / (pf.sum() + yf.sum() + EPS)
        return bce + 1 - dice


def _fused_branch(inputs: LossInputs, branch: str | None) -> Tensor | None:
    """Dataset mode, C <= 2 (the one-vs-rest logit of class 1 is z_1 - z_0): the BCE
    branches and BCE + Dice from the fused binary core; None for the transform branches."""
    if branch in ("log10_bce", "ln_bce"):
        sums = inputs.binary_sums(BinaryRequest(ce=True))
        assert sums.ce is not None
        bce = sums.ce.sum() / inputs.n_valid.clamp_min(1.0)
        return bce / math.log(10.0) if branch == "log10_bce" else bce
    if branch == "bce_dice":
        sums = inputs.binary_sums(BinaryRequest(ce=True, region=True))
        assert sums.ce is not None and sums.inter is not None
        bce = sums.ce.sum() / inputs.n_valid.clamp_min(1.0)
        inter, psum, ysum = sums.inter[:, 0], sums.pred[:, 0], sums.ground[:, 0]  # type: ignore[index]
        dice = (2 * inter + 1e-5) / (psum + ysum + 1e-5)
        return bce + 1 - dice.mean()
    return None


def _one_vs_rest(inputs: LossInputs, cls: int) -> tuple[Tensor, Tensor]:
    """Binary logit and label ``(B, *S)`` of class ``cls``: ``logit(softmax_c)`` for C >= 2."""
    if inputs.binary:
        return inputs.logits[:, 0], inputs.target_f[:, 0]
    z = inputs.logits
    others = torch.cat([z[:, :cls], z[:, cls + 1 :]], 1)
    # logit of the softmax probability: z_c - logsumexp of the other classes (stable)
    logit = z[:, cls] - torch.logsumexp(others, 1)
    return logit, (inputs.target == cls).to(inputs.dtype)


def _branches_from_fractions(fractions) -> str | dict[str, str]:
    if isinstance(fractions, Mapping):
        return {str(c): calf_select(v)["branch"] for c, v in fractions.items()}
    return calf_select(fractions)["branch"]
