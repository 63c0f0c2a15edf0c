"""One optimiser step over micro-batches: SAM family or plain, with AMP, accumulation,
clipping and DDP (METHODS §8.3-8.5)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any

import torch
from torch import Tensor, nn

from segbalance.errors import did_you_mean
from segbalance.optim.batchnorm import frozen_batchnorm_stats
from segbalance.optim.distributed import all_reduce_mean_, is_ddp, sync_context
from segbalance.optim.sam import SAM
from segbalance.optim.variants import LookSAM

PERTURBATION_MODES = ("global", "local")


def sam_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[..., Tensor],
    micro_batches: Sequence[tuple[Any, ...]],
    *,
    scaler: torch.amp.GradScaler | None = None,
    max_grad_norm: float | None = None,
    sam_perturbation: str = "global",
    autocast_dtype: torch.dtype | None = None,
) -> float:
    """Run one full optimiser step over ``micro_batches`` and return the mean first-pass loss.

    Args:
        model: the network, possibly wrapped in ``DistributedDataParallel``; its train/eval
            mode is left as it is.
        optimizer: a :class:`SAM` / ``LookSAM`` / ``PeriodicSAM``, or any plain torch
            optimiser (then: accumulation, AMP and clipping only).
        loss_fn: ``loss_fn(model(inputs), target)`` -> mean-reduced scalar; called with
            ``weight=`` when a micro-batch carries voxel weights.
        micro_batches: ``(inputs, target)`` or ``(inputs, target, weight)`` tuples, e.g.
            inputs ``(n, C, *spatial)``. Micro-batch ``j`` of ``n_j`` samples enters with
            weight ``n_j / sum(n)``, so two micro-batches of ``n`` equal one batch of ``2n``.
            The tensors are kept and replayed in the second pass (same augmentation).
        scaler: an enabled ``torch.amp.GradScaler`` for fp16 (procedure METHODS §8.4).
        max_grad_norm: ``clip_grad_norm_`` on the final (SAM) gradient after unscaling.
        sam_perturbation: ``"global"`` (default): one perturbation from the gradient of the
            whole effective batch (all micro-batches, all ranks; exact SAM). ``"local"``:
            one per micro-batch and rank (m-sharpness, no all-reduce in the first pass).
        autocast_dtype: e.g. ``torch.bfloat16``: forward and loss run under
            ``torch.autocast`` on the parameters' device type (recommended for SAM; no scaler).

    A step is skipped (no parameter change) when the gradient is not finite; then
    ``optimizer.skipped_steps`` is incremented and, with a scaler, its scale backs off
    once. LookSAM / PeriodicSAM steps that do not perturb take one pass. BatchNorm running
    statistics are updated by the first pass only. Returns the local (this rank's) loss.
    """
    batches = _check_micro_batches(micro_batches)
    if sam_perturbation not in PERTURBATION_MODES:
        raise ValueError(
            f"Expected sam_perturbation to be one of {list(PERTURBATION_MODES)} but got "
            f"{sam_perturbation!r}{did_you_mean(str(sam_perturbation), PERTURBATION_MODES)}"
        )
    if max_grad_norm is not None and not max_grad_norm > 0:
        raise ValueError(f"Expected max_grad_norm > 0 or None but got {max_grad_norm!r}")
    if scaler is not None and not scaler.is_enabled():
        scaler = None
    if isinstance(optimizer, LookSAM) and sam_perturbation == "local":
        raise ValueError(
            "LookSAM needs sam_perturbation='global' (its g_v comes from one gradient per step)"
        )
    step = _Step(model, optimizer, loss_fn, batches, scaler, max_grad_norm, autocast_dtype)
    optimizer.zero_grad(set_to_none=True)
    sam = step.sam
    if sam is None or not sam.is_sam_iteration:
        losses = step.one_pass()
    elif sam_perturbation == "global":
        losses = step.sam_global()
    else:
        losses = step.sam_local()
    optimizer.zero_grad(set_to_none=True)
    return float(sum(f * loss.double() for f, loss in zip(step.fractions, losses, strict=True)))


def _check_micro_batches(micro_batches: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    batches = list(micro_batches)
    if not batches:
        raise ValueError("Expected at least one micro-batch but got an empty list")
    for i, batch in enumerate(batches):
        if not isinstance(batch, tuple | list) or len(batch) not in (2, 3):
            raise ValueError(
                f"Expected micro_batches[{i}] to be (inputs, target) or (inputs, target, weight) "
                f"but got {type(batch).__name__}"
                + (f" of length {len(batch)}" if isinstance(batch, tuple | list) else "")
            )
    return [tuple(batch) if len(batch) == 3 else (*batch, None) for batch in batches]


def _count_skip(optimizer: torch.optim.Optimizer) -> None:
    optimizer.skipped_steps = getattr(optimizer, "skipped_steps", 0) + 1  # type: ignore[attr-defined]


class _Step:
    """State of one :func:`sam_step` call; each method is one procedure of METHODS §8.4-8.5."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: Callable[..., Tensor],
        batches: list[tuple[Any, ...]],
        scaler: torch.amp.GradScaler | None,
        max_grad_norm: float | None,
        autocast_dtype: torch.dtype | None,
    ) -> None:
        self.model, self.optimizer, self.loss_fn, self.batches = model, optimizer, loss_fn, batches
        self.scaler, self.max_grad_norm, self.autocast_dtype = scaler, max_grad_norm, autocast_dtype
        self.sam = optimizer if isinstance(optimizer, SAM) else None
        self.base = self.sam.base_optimizer if self.sam is not None else optimizer
        self.params = [p for g in self.base.param_groups for p in g["params"] if p.requires_grad]
        sizes = [int(batch[1].shape[0]) for batch in batches]
        self.fractions = [n / sum(sizes) for n in sizes]
        self.last = len(batches) - 1

    def run(self, j: int, factor: float, sync: bool) -> Tensor:
        """Forward + backward of micro-batch ``j`` with loss multiplied by ``factor``."""
        inputs, target, weight = self.batches[j]
        autocast = nullcontext()
        if self.autocast_dtype is not None:
            device_type = self.params[0].device.type
            autocast = torch.autocast(device_type=device_type, dtype=self.autocast_dtype)
        with sync_context(self.model, sync):
            with autocast:
                output = self.model(inputs)
                if weight is None:
                    loss = self.loss_fn(output, target)
                else:
                    loss = self.loss_fn(output, target, weight=weight)
            scaled = loss * factor
            (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
        return loss.detach()

    def one_pass(self) -> list[Tensor]:
        """Plain step (or a non-perturbing LookSAM/SAM-k step): accumulate, sync on the last."""
        losses = [self.run(j, f, sync=j == self.last) for j, f in enumerate(self.fractions)]
        self.finish(sam_pass=False)
        return losses

    def sam_global(self) -> list[Tensor]:
        """One perturbation from the gradient of all micro-batches on all ranks, then replay."""
        assert self.sam is not None
        losses = [self.run(j, f, sync=False) for j, f in enumerate(self.fractions)]
        if is_ddp(self.model):
            for p in self.params:
                if p.grad is None:  # every rank must contribute the same tensors
                    p.grad = torch.zeros_like(p)
            all_reduce_mean_(self.model, [p.grad for p in self.params])
        if not self.unscale_first_pass():
            self.skip_first_pass()
            return losses
        self.sam.first_step(zero_grad=True)
        with frozen_batchnorm_stats(self.model):
            for j, f in enumerate(self.fractions):
                self.run(j, f, sync=j == self.last)  # the last backward reduces g_SAM
        self.sam.restore()
        self.finish(sam_pass=True)
        return losses

    def sam_local(self) -> list[Tensor]:
        """Per-micro-batch, per-rank perturbation; one all-reduce of the summed g_SAM."""
        assert self.sam is not None
        accumulated = [
            torch.zeros_like(p, dtype=torch.promote_types(p.dtype, torch.float32))
            for p in self.params
        ]
        first_pass_bad = torch.zeros((), dtype=torch.float32, device=self.params[0].device)
        losses = []
        for j, f in enumerate(self.fractions):
            self.optimizer.zero_grad(set_to_none=True)
            losses.append(self.run(j, 1.0, sync=False))
            if self.unscale_first_pass():
                self.sam.first_step(zero_grad=True)
            else:  # still run the second pass: ranks must issue the same collectives
                first_pass_bad.fill_(1.0)
                self.optimizer.zero_grad(set_to_none=True)
            with frozen_batchnorm_stats(self.model):
                self.run(j, f, sync=False)
            self.sam.restore()
            for acc, p in zip(accumulated, self.params, strict=True):
                if p.grad is not None:
                    acc.add_(p.grad)
        self.optimizer.zero_grad(set_to_none=True)
        if is_ddp(self.model):
            all_reduce_mean_(self.model, [*accumulated, first_pass_bad])
        if first_pass_bad.item() > 0:
            self.skip_first_pass()
            return losses
        for acc, p in zip(accumulated, self.params, strict=True):
            p.grad = acc.to(p.dtype)
        self.finish(sam_pass=True)
        return losses

    @torch.no_grad()
    def unscale_first_pass(self) -> bool:
        """Divide the first-pass gradients by the scale by hand (the scaler may unscale each
        optimiser only once per step); return whether they are all finite."""
        grads = [p.grad for p in self.params if p.grad is not None]
        if self.scaler is not None:
            inverse = 1.0 / self.scaler.get_scale()
            for g in grads:
                g.mul_(inverse)
        return _all_finite(grads)

    def skip_first_pass(self) -> None:
        """Non-finite first pass: no second pass, no step; the scale backs off once."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.update(new_scale=self.scaler.get_scale() * self.scaler.get_backoff_factor())
        _count_skip(self.optimizer)

    def finish(self, sam_pass: bool) -> None:
        """Unscale, variant hook, clip, base step (through the scaler), count."""
        if self.scaler is not None:
            self.scaler.unscale_(self.base)
        elif not _all_finite([p.grad for p in self.params if p.grad is not None]):
            self.optimizer.zero_grad(set_to_none=True)
            _count_skip(self.optimizer)
            return
        if self.sam is not None:
            self.sam.prepare_gradient(sam_pass)
        if self.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
        if self.scaler is not None:
            scale_before = self.scaler.get_scale()
            self.scaler.step(self.base)
            self.scaler.update()
            if self.scaler.get_scale() < scale_before:  # the scaler skipped the step
                _count_skip(self.optimizer)
                return
        else:
            self.base.step()
        if self.sam is not None:
            self.sam.count_step()


def _all_finite(tensors: list[Tensor]) -> bool:
    if not tensors:
        return True
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())
