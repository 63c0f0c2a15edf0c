"""Sharpness-Aware Minimization (SAM, Foret et al. 2021) and ASAM (Kwon et al. 2021).

The interface follows davda54/sam so users can switch: ``first_step`` perturbs,
``second_step`` restores and runs the base optimiser. Mixed precision, gradient
accumulation and DDP are handled by :func:`segbalance.optim.sam_step`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from segbalance.optim.perturbation import check_rho, compute_perturbation


class SAM(torch.optim.Optimizer):
    """SAM / ASAM wrapper around a base optimiser (METHODS §8.1-8.3, §8.7).

    ``e(w) = rho * T_w^2 g / ||T_w g||`` with ``T_w = 1`` (SAM) or, for ``adaptive=True``,
    ``T_w = |w| + asam_eta`` on weight tensors and 1 on biases (ASAM, SamsungLabs/ASAM).
    ``asam_eta=0, asam_exclude_bias=False`` gives davda54/sam's ``adaptive=True``.

    Args:
        params: parameters, ``model.named_parameters()`` (names drive ASAM's weight rule
            and ``exclude_norm_bias``), or parameter groups; a group may set its own ``rho``.
        base_optimizer: optimiser *class*, e.g. ``torch.optim.AdamW``; built on the same
            ``param_groups``, so LR schedulers and weight decay act on it as usual.
        rho: radius; ``None`` means 0.05 (Foret et al.) or 0.5 with ``adaptive`` (Kwon et al.).
        adaptive: ASAM instead of SAM.
        asam_eta: ASAM's eta (default 0.01, SamsungLabs/ASAM).
        asam_exclude_bias: ASAM scales only weight tensors (default True, Kwon et al.).
        exclude_norm_bias: leave norm and bias parameters unperturbed (default False).
        sam_start_frac: plain base steps for the first ``sam_start_frac * total_steps`` steps.
        total_steps: planned number of steps; needed when ``sam_start_frac > 0``.
        **base_kwargs: passed to ``base_optimizer`` (``lr``, ``weight_decay``, ...).

    ``state_dict()`` holds the base optimiser's state (moments included), the
    hyper-parameters (in the shared ``param_groups``) and the step counters; never the
    stored copy of ``w``. ``step_count`` counts applied steps, ``skipped_steps`` steps that
    :func:`sam_step` skipped for a non-finite gradient.
    """

    def __init__(
        self,
        params: Iterable[Any],
        base_optimizer: type[torch.optim.Optimizer],
        rho: float | None = None,
        adaptive: bool = False,
        *,
        asam_eta: float = 0.01,
        asam_exclude_bias: bool = True,
        exclude_norm_bias: bool = False,
        sam_start_frac: float = 0.0,
        total_steps: int | None = None,
        **base_kwargs: Any,
    ) -> None:
        if not (
            isinstance(base_optimizer, type) and issubclass(base_optimizer, torch.optim.Optimizer)
        ):
            raise ValueError(
                f"Expected base_optimizer to be an optimizer class such as torch.optim.AdamW "
                f"but got {base_optimizer!r}"
            )
        rho = check_rho((0.5 if adaptive else 0.05) if rho is None else rho)
        check_rho(asam_eta, "asam_eta")
        defaults = dict(rho=rho, adaptive=bool(adaptive), asam_eta=float(asam_eta))
        defaults |= dict(asam_exclude_bias=asam_exclude_bias, exclude_norm_bias=exclude_norm_bias)
        super().__init__(params, defaults | base_kwargs)
        for i, group in enumerate(self.param_groups):
            group["rho"] = check_rho(group["rho"], f"param_groups[{i}]['rho']")
        self.base_optimizer = base_optimizer(self.param_groups, **base_kwargs)
        self.param_groups = self.base_optimizer.param_groups  # one set of groups, shared
        self.defaults.update(self.base_optimizer.defaults)
        self.start_step = _start_step(sam_start_frac, total_steps)
        self.step_count = 0
        self.skipped_steps = 0
        self._saved_w: dict[Tensor, Tensor] = {}  # copy of w, reused across steps
        self._perturbed: list[Tensor] = []

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group (e.g. unfrozen layers) to the shared groups, with SAM's defaults."""
        if not hasattr(self, "base_optimizer"):  # called by Optimizer.__init__
            super().add_param_group(param_group)
            return
        param_group.setdefault("rho", self.defaults["rho"])
        param_group["rho"] = check_rho(param_group["rho"], "param_group['rho']")
        for key in ("adaptive", "asam_eta", "asam_exclude_bias", "exclude_norm_bias"):
            param_group.setdefault(key, self.defaults[key])
        self.base_optimizer.add_param_group(param_group)

    @property
    def is_sam_iteration(self) -> bool:
        """Whether the next step perturbs (two passes) rather than a plain base step."""
        return self.step_count >= self.start_step

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """Store ``w`` and move to ``w + e(w)`` using the gradients at ``w``."""
        if self._perturbed:
            raise RuntimeError("first_step() called twice; call second_step() or restore() first")
        for param, eps in compute_perturbation(self.param_groups):
            saved = self._saved_w.get(param)
            if saved is None:
                self._saved_w[param] = param.detach().clone()
            else:
                saved.copy_(param)
            param.add_(eps)
            self._perturbed.append(param)
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def restore(self) -> None:
        """Copy ``w`` back (exactly; no subtraction) without a base step."""
        for param in self._perturbed:
            param.copy_(self._saved_w[param])
        self._perturbed = []

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        """Restore ``w`` and run the base optimiser with the gradient taken at ``w + e``."""
        self.restore()
        self.prepare_gradient(sam_pass=True)
        self.base_optimizer.step()
        self.count_step()
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def base_step(self, zero_grad: bool = False) -> None:
        """A one-pass step on the gradient at ``w`` (used when not ``is_sam_iteration``)."""
        self.prepare_gradient(sam_pass=False)
        self.base_optimizer.step()
        self.count_step()
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> None:  # type: ignore[override]
        """Full step; gradients at ``w`` must exist, ``closure`` redoes forward+backward."""
        if closure is None:
            raise ValueError(
                f"{type(self).__name__}.step() needs a closure that runs forward and backward "
                "(or call first_step() and second_step() yourself)"
            )
        if not self.is_sam_iteration:
            self.base_step()
            return
        self.first_step(zero_grad=True)
        with torch.enable_grad():
            closure()
        self.second_step()

    def prepare_gradient(self, sam_pass: bool) -> None:
        """Hook on the final, unscaled gradient just before the base step (LookSAM)."""

    def count_step(self) -> None:
        """Record one applied step."""
        self.step_count += 1
        self._opt_called = True  # tells torch LR schedulers that this optimiser has stepped

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        """``{"base": base optimiser state dict, "sam": counters and variant state}``."""
        sam_state = {"variant": type(self).__name__, "step_count": self.step_count}
        sam_state |= {"skipped_steps": self.skipped_steps, "start_step": self.start_step}
        return {"base": self.base_optimizer.state_dict(), "sam": sam_state | self._extra_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        """Load what :meth:`state_dict` returned (the base optimiser's moments included)."""
        if not isinstance(state_dict, dict) or set(state_dict) != {"base", "sam"}:
            got = sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict)
            raise ValueError(f"Expected a SAM state dict with keys ['base', 'sam'] but got {got}")
        sam_state = state_dict["sam"]
        if sam_state["variant"] != type(self).__name__:
            raise ValueError(
                f"Expected a {type(self).__name__} state dict but got one from {sam_state['variant']}"
            )
        self.base_optimizer.load_state_dict(state_dict["base"])
        self.param_groups = self.base_optimizer.param_groups
        self.step_count = int(sam_state["step_count"])
        self.skipped_steps = int(sam_state["skipped_steps"])
        self.start_step = int(sam_state["start_step"])
        self._load_extra_state(sam_state)

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, sam_state: dict[str, Any]) -> None:
        pass

    def _params(self) -> list[Tensor]:
        return [p for group in self.param_groups for p in group["params"]]


def _start_step(sam_start_frac: float, total_steps: int | None) -> int:
    """First step that uses SAM, from ``sam_start_frac`` of ``total_steps``."""
    if not 0.0 <= sam_start_frac < 1.0:
        raise ValueError(f"Expected sam_start_frac in [0, 1) but got {sam_start_frac!r}")
    if sam_start_frac == 0.0:
        return 0
    if total_steps is None or total_steps < 1:
        raise ValueError(
            f"Expected total_steps >= 1 when sam_start_frac > 0 but got {total_steps!r}"
        )
    return math.ceil(sam_start_frac * total_steps)
