"""Cheaper SAM variants (METHODS §8.6): LookSAM and periodic SAM (SAM-k).

Both take :class:`~segbalance.optim.SAM`'s constructor arguments and ``step(closure)``.
On steps that do not perturb, ``step(closure)`` does not call the closure (one pass
only) and :func:`~segbalance.optim.sam_step` runs a single forward+backward.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from segbalance.optim.perturbation import global_norm
from segbalance.optim.sam import SAM


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"Expected k to be an integer >= 1 but got {k!r}")
    return k


class PeriodicSAM(SAM):
    """SAM-k: a SAM step every ``k``-th step (steps 0, k, 2k, ...), a plain base step otherwise.

    Cost ``1 + 1/k`` passes per step. LookSAM's authors (Liu et al., CVPR 2022) report that
    this schedule loses much of SAM's gain; it is here as a baseline. ``k=2`` is a project
    choice (METHODS §8.6, assumed).
    """

    def __init__(
        self,
        params: Iterable[Any],
        base_optimizer: type[torch.optim.Optimizer],
        rho: float | None = None,
        adaptive: bool = False,
        *,
        k: int = 2,
        **kwargs: Any,
    ) -> None:
        self.k = _check_k(k)
        super().__init__(params, base_optimizer, rho, adaptive, **kwargs)

    @property
    def is_sam_iteration(self) -> bool:
        since_start = self.step_count - self.start_step
        return since_start >= 0 and since_start % self.k == 0

    def _extra_state(self) -> dict[str, Any]:
        return {"k": self.k}

    def _load_extra_state(self, sam_state: dict[str, Any]) -> None:
        self.k = int(sam_state["k"])


class LookSAM(SAM):
    """LookSAM (Liu et al., CVPR 2022, "Towards Efficient and Scalable Sharpness-Aware
    Minimization").

    Every ``k``-th step (a refresh) is a SAM step that also stores the part of the SAM
    gradient ``g_s`` orthogonal to the gradient ``g`` at ``w``:
    ``g_v = g_s - ||g_s|| cos(g, g_s) g / ||g||``. Other steps take one pass and use
    ``g + alpha * ||g|| / ||g_v|| * g_v`` (``g`` unchanged where ``||g_v|| = 0``).
    Cost about ``1 + 1/k`` passes; memory one more parameter copy (``g_v``). A ``g_v``
    at rounding-noise level (``||g_v|| <= 100 eps ||g_s||``, e.g. any 1-element tensor in
    the per-tensor mode) is treated as 0.

    Defaults ``k=5``, ``alpha=0.7`` come from public unofficial implementations (the
    paper's table values are not verified; METHODS §8.6). The decomposition is per
    parameter tensor, as reported for the upstream implementation; ``looksam_global=True``
    uses one global inner product and norm instead. ``g_v`` is saved in ``state_dict()``.
    """

    def __init__(
        self,
        params: Iterable[Any],
        base_optimizer: type[torch.optim.Optimizer],
        rho: float | None = None,
        adaptive: bool = False,
        *,
        k: int = 5,
        alpha: float = 0.7,
        looksam_global: bool = False,
        **kwargs: Any,
    ) -> None:
        self.k = _check_k(k)
        if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not alpha >= 0:
            raise ValueError(f"Expected alpha to be a number >= 0 but got {alpha!r}")
        self.alpha = float(alpha)
        self.looksam_global = bool(looksam_global)
        super().__init__(params, base_optimizer, rho, adaptive, **kwargs)
        self.g_v: dict[Tensor, Tensor] = {}
        self._g_at_w: dict[Tensor, Tensor] = {}

    @property
    def is_sam_iteration(self) -> bool:
        since_start = self.step_count - self.start_step
        return since_start >= 0 and since_start % self.k == 0

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """Keep the gradient at ``w`` (for ``g_v``), then perturb as SAM does."""
        self._g_at_w = {p: p.grad.detach().clone() for p in self._params() if p.grad is not None}
        super().first_step(zero_grad)

    @torch.no_grad()
    def prepare_gradient(self, sam_pass: bool) -> None:
        """Refresh: store ``g_v`` from ``g_s`` (in ``.grad``). Otherwise: add ``g_v`` to ``g``."""
        if sam_pass:
            self._refresh_g_v()
        elif self.step_count >= self.start_step and self.g_v:
            self._add_g_v()

    def _refresh_g_v(self) -> None:
        pairs = [
            (p, self._g_at_w[p]) for p in self._params() if p.grad is not None and p in self._g_at_w
        ]
        self._g_at_w = {}
        if not pairs:
            return
        g_list = [g for _, g in pairs]
        gs_list = [p.grad for p, _ in pairs]
        if self.looksam_global:
            dot = sum(
                (g * gs).sum(dtype=torch.float64) for g, gs in zip(g_list, gs_list, strict=True)
            )
            g_sq = global_norm(g_list).double() ** 2
            coefs = [_safe_ratio(dot, g_sq)] * len(pairs)
        else:
            coefs = [
                _safe_ratio((g * gs).sum(), (g * g).sum())
                for g, gs in zip(g_list, gs_list, strict=True)
            ]
        # g_v = g_s - (g . g_s / ||g||^2) g, i.e. g_s minus its projection on g
        new_g_v = {
            p: gs - coef.to(gs) * g for (p, g), gs, coef in zip(pairs, gs_list, coefs, strict=True)
        }
        self._drop_rounding_noise(new_g_v, gs_list)
        # A non-finite g_s (fp16 overflow: the step is skipped) must not poison g_v.
        if bool(torch.stack([torch.isfinite(v).all() for v in new_g_v.values()]).all()):
            self.g_v = new_g_v

    def _drop_rounding_noise(self, g_v: dict[Tensor, Tensor], gs_list: list[Tensor]) -> None:
        """Zero ``g_v`` where ``||g_v|| <= 100 eps ||g_s||``: that is cancellation noise (a
        1-element tensor's ``g_v`` is exactly 0), and the ``||g|| / ||g_v||`` rescaling
        would blow it up to a full-size step in a random direction."""
        values = list(g_v.values())
        tol = 100 * torch.finfo(values[0].dtype).eps
        if self.looksam_global:
            keep = global_norm(values) > tol * global_norm(gs_list)
            for v in values:
                v.mul_(keep.to(v))
            return
        for v, gs in zip(values, gs_list, strict=True):
            v.mul_((global_norm([v]) > tol * global_norm([gs])).to(v))

    def _add_g_v(self) -> None:
        pairs = [
            (p.grad, self.g_v[p]) for p in self._params() if p.grad is not None and p in self.g_v
        ]
        if not pairs:
            return
        if self.looksam_global:
            ratio = _safe_ratio(
                global_norm([g for g, _ in pairs]), global_norm([v for _, v in pairs])
            )
            ratios = [ratio] * len(pairs)
        else:
            ratios = [_safe_ratio(global_norm([g]), global_norm([v])) for g, v in pairs]
        for (grad, g_v), ratio in zip(pairs, ratios, strict=True):
            grad.add_(g_v * (self.alpha * ratio).to(grad))

    def _extra_state(self) -> dict[str, Any]:
        index = {p: i for i, p in enumerate(self._params())}
        g_v = {index[p]: v.detach().clone() for p, v in self.g_v.items()}
        return {"k": self.k, "alpha": self.alpha, "looksam_global": self.looksam_global, "g_v": g_v}

    def _load_extra_state(self, sam_state: dict[str, Any]) -> None:
        self.k = int(sam_state["k"])
        self.alpha = float(sam_state["alpha"])
        self.looksam_global = bool(sam_state["looksam_global"])
        params = self._params()
        self.g_v = {
            params[int(i)]: v.to(params[int(i)]).clone() for i, v in sam_state["g_v"].items()
        }


def _safe_ratio(numerator: Tensor, denominator: Tensor) -> Tensor:
    """``numerator / denominator``, or 0 where the denominator is 0 (no device sync)."""
    safe = torch.where(denominator > 0, denominator, torch.ones_like(denominator))
    return torch.where(denominator > 0, numerator / safe, torch.zeros_like(numerator / safe))
