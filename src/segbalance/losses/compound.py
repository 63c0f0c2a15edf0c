"""Loss registry, the ``"a*x+y"`` compound parser and :func:`build_loss`.

A compound is a list of (weight, loss); its terms read one shared :class:`LossInputs`, so
the activation, one-hot and voxel CE are computed once per call.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from segbalance.errors import did_you_mean
from segbalance.losses.balanced_ce import BalancedCELoss, DilatedBalancedCELoss
from segbalance.losses.base import SegLoss, inverse_lesion_weight_tensor
from segbalance.losses.binary_request import BinaryRequest
from segbalance.losses.calf import CALFLoss
from segbalance.losses.crossentropy import (
    CrossEntropyLoss,
    FocalLoss,
    LogitAdjustedCELoss,
    TopKCELoss,
)
from segbalance.losses.dice import (
    AsymmetricSimilarityLoss,
    DiceLoss,
    GeneralizedDiceLoss,
    TverskyLoss,
)
from segbalance.losses.dice_variants import PixelModulatedDiceLoss, TopKDiceLoss
from segbalance.losses.inputs import LossInputs
from segbalance.losses.spec import (
    COMMON_OPTIONS,
    COMPOUND_ALIASES,
    LOSS_SPECS,
    PRESETS,
    available_losses,
)

LOSS_CLASSES: dict[str, type[SegLoss]] = {
    cls.name: cls
    for cls in [
        CrossEntropyLoss,
        BalancedCELoss,
        DilatedBalancedCELoss,
        FocalLoss,
        TopKCELoss,
        LogitAdjustedCELoss,
        DiceLoss,
        GeneralizedDiceLoss,
        TverskyLoss,
        AsymmetricSimilarityLoss,
        TopKDiceLoss,
        PixelModulatedDiceLoss,
        CALFLoss,
    ]
}
_SHARED_OPTIONS = tuple(COMMON_OPTIONS)
_TERM = re.compile(
    r"^\s*(?:(?P<w>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*\*\s*)?(?P<name>[a-z0-9_]+)\s*$"
)


def parse_loss_expression(expression: str) -> list[tuple[float, str]]:
    """Split ``"0.5*la_ce+dice"`` into ``[(0.5, "la_ce"), (1.0, "dice")]``; aliases expanded."""
    if not isinstance(expression, str) or not expression.strip():
        raise ValueError(f"loss: expected a loss name such as 'dice+ce' but got {expression!r}")
    terms: list[tuple[float, str]] = []
    for part in expression.split("+"):
        match = _TERM.match(part.lower())
        if match is None:
            raise ValueError(
                f"loss: expected terms like 'name' or '0.5*name' joined by '+' but got "
                f"{part.strip()!r} in {expression!r}"
            )
        weight, name = float(match["w"] or 1.0), match["name"]
        if name not in LOSS_CLASSES and name not in COMPOUND_ALIASES and name not in PRESETS:
            raise ValueError(
                f"loss: unknown loss {name!r}{did_you_mean(name, available_losses())}; "
                f"expected one of {', '.join(available_losses())}"
            )
        if name in COMPOUND_ALIASES:
            terms.extend((weight * w, n) for w, n in parse_loss_expression(COMPOUND_ALIASES[name]))
        else:
            terms.append((weight, name))
    return terms


def _term_base(name: str) -> tuple[str, dict[str, Any]]:
    """Registered class name and preset options of a term name."""
    if name in PRESETS:
        base, preset = PRESETS[name]
        return base, dict(preset)
    return name, {}


def _route_options(names: list[str], options: dict[str, Any]) -> list[dict[str, Any]]:
    """Give shared options to every term, any other option to the one term that accepts it."""
    routed: list[dict[str, Any]] = [{} for _ in names]
    for key, value in options.items():
        if key in _SHARED_OPTIONS:
            for opts in routed:
                opts[key] = value
            continue
        takers = [i for i, n in enumerate(names) if key in LOSS_SPECS[_term_base(n)[0]].options]
        if not takers:
            valid = sorted({o for n in names for o in LOSS_SPECS[_term_base(n)[0]].all_options()})
            raise ValueError(
                f"{key}: unknown option for loss {'+'.join(names)!r}{did_you_mean(key, valid)}; "
                f"expected one of {', '.join(valid)}"
            )
        if len(takers) > 1:
            raise ValueError(
                f"{key}: option accepted by several terms ({', '.join(names[i] for i in takers)}); "
                f"give it to one with term_options={{'{names[takers[0]]}': {{'{key}': ...}}}}"
            )
        routed[takers[0]][key] = value
    return routed


def _make_term(name: str, options: dict[str, Any]) -> SegLoss:
    base, preset = _term_base(name)
    merged = {**preset, **options}
    valid = LOSS_SPECS[base].all_options()
    for key in merged:
        if key not in valid:
            raise ValueError(
                f"{key}: unknown option for loss {name!r}{did_you_mean(key, list(valid))}; "
                f"expected one of {', '.join(valid)}"
            )
    return LOSS_CLASSES[base](**merged)


class CompoundLoss(nn.Module):
    """Weighted sum of loss terms sharing one validated input (``"a*x+y"``).

    Each term is reduced to a scalar independently, then the weighted sum is returned
    (METHODS §0). Voxel weights go to every term; a term that computes its own weighting
    makes passing weights a ``ValueError``.
    """

    def __init__(self, terms: list[tuple[float, SegLoss]], expression: str = "") -> None:
        super().__init__()
        if not terms:
            raise ValueError("terms: expected at least one (weight, loss) pair")
        self.weights = [float(w) for w, _ in terms]
        self.terms = nn.ModuleList([t for _, t in terms])
        self.expression = expression or "+".join(f"{w:g}*{t.name}" for w, t in terms)
        ignore = {t.ignore_index for t in self.terms}
        if len(ignore) > 1:
            raise ValueError(f"ignore_index: expected one value for all terms but got {ignore}")
        self.ignore_index = ignore.pop()
        weighting = {t.voxel_weighting for t in self.terms}
        self.voxel_weighting = next((w for w in weighting if w is not None), None)

    @property
    def accepts_weight(self) -> bool:
        return all(t.accepts_weight for t in self.terms)

    def forward(self, logits: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        if weight is not None and not self.accepts_weight:
            refusing = [t.name for t in self.terms if not t.accepts_weight]
            raise ValueError(
                f"weight: {self.expression!r} contains {', '.join(refusing)}, which compute "
                "their own weighting (expected weight=None)"
            )
        with torch.autocast(device_type=logits.device.type, enabled=False):
            inputs = LossInputs(logits, target, weight, self.ignore_index)
            weighted = inputs
            if weight is None and self.voxel_weighting is not None:
                # terms without voxel_weighting must not see the computed weights
                weighted = inputs.with_weight(inverse_lesion_weight_tensor(inputs))
            sources = [weighted if t.voxel_weighting is not None else inputs for t in self.terms]
            _request_shared_sums(list(self.terms), sources)
            total = None
            for w, term, src in zip(self.weights, self.terms, sources, strict=True):
                value = w * term.compute(src)
                total = value if total is None else total + value
            return total

    def extra_repr(self) -> str:
        return f"expression={self.expression!r}"


def _request_shared_sums(terms: list[SegLoss], sources: list[LossInputs]) -> None:
    """Compute the fused region sums once per input with the union of the terms' needs."""
    for src in {id(s): s for s in sources}.values():
        if src.fast_binary:
            _request_binary(src, [t for t, s in zip(terms, sources, strict=True) if s is src])
            continue
        needs = [t.region_needs() for t, s in zip(terms, sources, strict=True) if s is src]
        needs = [n for n in needs if n is not None]
        # fusing only pays when an overlap term is there to share the activation
        if not any("squared" in n for n in needs):
            continue
        src.region_sums(
            squared=any(n.get("squared", False) for n in needs),
            cross_entropy=any(n.get("cross_entropy", False) for n in needs),
        )


def _request_binary(src: LossInputs, terms: list[SegLoss]) -> None:
    """C <= 2: merge the terms' binary-core requests so compatible terms share one call."""
    groups: list[BinaryRequest] = []
    for term in terms:
        request = term.binary_request(src)
        if request is None:
            continue
        for i, group in enumerate(groups):
            merged = group.merge(request)
            if merged is not None:
                groups[i] = merged
                break
        else:
            groups.append(request)
    for group in groups:
        src.binary_sums(group)


def build_loss(
    name: str,
    *,
    term_options: Mapping[str, Mapping[str, Any]] | None = None,
    **options: Any,
) -> nn.Module:
    """Build a loss or compound from its name, e.g. ``"dice+ce"``, ``"0.5*la_ce+dice"``.

    Args:
        name: one registered name (``available_losses()``) or terms joined by ``+``, each
            optionally weighted ``a*name``. ``balanced`` expands to ``la_ce+dice``.
        term_options: per-term options, ``{"dice": {"smooth_nr": 0.0}}``.
        **options: ``ignore_index`` and ``voxel_weighting`` go to every term; any other
            option goes to the one term that accepts it (``ValueError`` if none or several).

    Returns:
        An ``nn.Module`` called as ``loss(logits (B,C,*S), target (B,*S) or (B,1,*S),
        weight=None)`` returning a 0-d tensor.
    """
    terms = parse_loss_expression(name)
    names = [n for _, n in terms]
    routed = _route_options(names, dict(options))
    for term_name, extra in (term_options or {}).items():
        key = term_name.lower()
        if key not in names:
            raise ValueError(
                f"term_options: {term_name!r} is not a term of {name!r}; expected one of {names}"
            )
        for i, n in enumerate(names):
            if n == key:
                routed[i].update(extra)
    built = [(w, _make_term(n, opts)) for (w, n), opts in zip(terms, routed, strict=True)]
    if len(built) == 1 and built[0][0] == 1.0:
        return built[0][1]
    return CompoundLoss(built, expression=name)
