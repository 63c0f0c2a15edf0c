"""Pretrained weights and fine-tuning helpers: load a checkpoint with a report, freeze
parts of a network, and give parts their own learning rates.

Checkpoints are read with ``torch.load(weights_only=True)`` only: a file that needs
arbitrary unpickling is refused, never loaded by falling back to full pickle.
"""

from __future__ import annotations

import fnmatch
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from segbalance.errors import InputError, did_you_mean

# Keys under which training scripts commonly nest the model weights, tried in order.
NESTED_STATE_DICT_KEYS = ("model", "state_dict")


@dataclass
class LoadReport:
    """What a checkpoint load did.

    ``matched``: loaded tensors; ``missing``: model tensors the checkpoint lacks (left as
    they were); ``unexpected``: checkpoint tensors the model lacks; ``shape_mismatched``:
    ``(name, checkpoint shape, model shape)``, never loaded; ``skipped``: checkpoint
    tensors deliberately ignored (e.g. SegVol's ``text_encoder.*`` without text prompts).
    """

    source: str
    matched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shape_mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(
        default_factory=list
    )
    skipped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line, e.g. ``"w.pt: loaded 40/42 tensors; 2 missing, 1 unexpected, ..."``."""
        total = len(self.matched) + len(self.missing) + len(self.shape_mismatched)
        return (
            f"{self.source}: loaded {len(self.matched)}/{total} model tensors; "
            f"{len(self.missing)} missing, {len(self.unexpected)} unexpected, "
            f"{len(self.shape_mismatched)} shape-mismatched, {len(self.skipped)} skipped"
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready copy (shapes as lists)."""
        out = asdict(self)
        out["shape_mismatched"] = [
            [name, list(ckpt), list(model)] for name, ckpt, model in self.shape_mismatched
        ]
        return out


def read_checkpoint(path: str | Path) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with one-line errors.

    Raises:
        InputError: missing file, unreadable file, or a file that needs unrestricted
            unpickling (arbitrary Python objects), which is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), "checkpoint file not found", "an existing file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = next(
            (line.strip() for line in str(exc).splitlines() if "WeightsUnpickler" in line), ""
        )
        raise InputError(
            str(path),
            "refused by torch.load(weights_only=True): it holds objects other than tensors "
            f"and containers{f' ({reason})' if reason else ''}; segbalance never unpickles "
            "arbitrary objects",
            "a checkpoint of plain tensors",
        ) from None
    except Exception as exc:  # torch raises RuntimeError/EOFError/... for damaged files
        raise InputError(
            str(path),
            f"cannot be read as a torch checkpoint ({type(exc).__name__}: {exc})".splitlines()[0],
            "a file written by torch.save",
        ) from None


def extract_state_dict(obj: Any, where: str, key: str | None = None) -> dict[str, Tensor]:
    """The ``{name: tensor}`` mapping inside a loaded checkpoint.

    ``key`` picks a nested entry; otherwise ``obj["model"]`` or ``obj["state_dict"]`` when
    present (and a mapping), else ``obj`` itself. Non-tensor entries are an error.
    """
    if not isinstance(obj, Mapping):
        raise InputError(where, f"holds a {type(obj).__name__}", "a dict of tensors")
    if key is not None:
        if key not in obj:
            raise InputError(
                where,
                f"has no key {key!r}{did_you_mean(key, [str(k) for k in obj])}",
                f"one of {sorted(map(str, obj))}",
            )
        obj = obj[key]
    else:
        for nested in NESTED_STATE_DICT_KEYS:
            if isinstance(obj.get(nested), Mapping):
                obj = obj[nested]
                break
    if not isinstance(obj, Mapping):
        raise InputError(where, f"key {key!r} holds a {type(obj).__name__}", "a dict of tensors")
    bad = [str(k) for k, v in obj.items() if not isinstance(v, Tensor)]
    if bad:
        raise InputError(
            where,
            f"entries {bad[:5]} are not tensors (pass key= to pick the weights)",
            "a state dict {name: tensor}",
        )
    return {str(k): v for k, v in obj.items()}


def strip_best_prefixes(
    state: Mapping[str, Tensor], model_keys: set[str], prefixes: Sequence[str]
) -> dict[str, Tensor]:
    """Strip leading ``prefixes`` (e.g. ``module.``) only where that matches more model keys.

    A blind strip would break networks whose own names start with a prefix (MONAI's
    ``UNet`` keys start with ``model.``), so each strip must increase the match count.
    """
    current = dict(state)
    for _ in range(len(prefixes)):
        best, best_hits = None, len(model_keys.intersection(current))
        for prefix in prefixes:
            stripped = {
                (k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in current.items()
            }
            hits = len(model_keys.intersection(stripped))
            if len(stripped) == len(current) and hits > best_hits:
                best, best_hits = stripped, hits
        if best is None:
            break
        current = best
    return current


def compare_state_dicts(
    state: Mapping[str, Tensor], reference: Mapping[str, Tensor], source: str
) -> LoadReport:
    """Sort checkpoint keys into matched / missing / unexpected / shape-mismatched."""
    report = LoadReport(source=source)
    for name, target in reference.items():
        if name not in state:
            report.missing.append(name)
        elif tuple(state[name].shape) != tuple(target.shape):
            report.shape_mismatched.append((name, tuple(state[name].shape), tuple(target.shape)))
        else:
            report.matched.append(name)
    report.unexpected = [name for name in state if name not in reference]
    return report


def load_pretrained(
    model: nn.Module,
    path: str | Path,
    *,
    strict: bool = False,
    strip_prefixes: Sequence[str] = ("module.", "model."),
    key: str | None = None,
) -> LoadReport:
    """Load weights from ``path`` into ``model`` (in place) and report what matched.

    The weights are ``checkpoint[key]``, else ``checkpoint["model"]`` or
    ``checkpoint["state_dict"]`` when present, else the checkpoint itself; leading
    ``strip_prefixes`` are removed where that matches more model keys (DataParallel's
    ``module.``, HuggingFace wrappers' ``model.``). Shape-mismatched tensors are never
    loaded. A :class:`~segbalance.models.SegVol` model goes through
    :func:`~segbalance.models.load_segvol_checkpoint` (the published layout's rules).

    Args:
        strict: raise ``ValueError`` (before loading anything) if any tensor is missing,
            unexpected or shape-mismatched.

    Raises:
        InputError: missing, damaged or refused file; no state dict inside.
        ValueError: ``strict=True`` and the checkpoint does not fit exactly.
    """
    from segbalance.models.segvol.model import SegVol

    if isinstance(model, SegVol):
        if key is not None:
            raise ValueError(f"key={key!r} is not used for SegVol checkpoints; leave it None")
        from segbalance.models.segvol.checkpoint import load_segvol_checkpoint

        return load_segvol_checkpoint(model, path)
    where = str(path)
    state = extract_state_dict(read_checkpoint(path), where, key)
    reference = model.state_dict()
    state = strip_best_prefixes(state, set(reference), strip_prefixes)
    report = compare_state_dicts(state, reference, where)
    if strict and (report.missing or report.unexpected or report.shape_mismatched):
        raise ValueError(
            f"Expected {where} to match the model exactly (strict=True) but got "
            f"missing={report.missing[:10]}, unexpected={report.unexpected[:10]}, "
            f"shape_mismatched={report.shape_mismatched[:10]}"
        )
    model.load_state_dict({name: state[name] for name in report.matched}, strict=False)
    return report


def matches(name: str, pattern: str) -> bool:
    """``fnmatch`` on a parameter name; a bare prefix ``encoder`` also matches ``encoder.*``."""
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(name, pattern + ".*")


def _unmatched_error(pattern: str, model: nn.Module, what: str) -> ValueError:
    tops = [name for name, _ in model.named_children()]
    return ValueError(
        f"Expected {what} pattern {pattern!r} to match at least one parameter name"
        f"{did_you_mean(pattern, tops)}; top-level modules: {tops}"
    )


def freeze(model: nn.Module, patterns: Sequence[str]) -> int:
    """Set ``requires_grad=False`` on parameters whose name matches any pattern.

    Patterns are ``fnmatch`` patterns over ``named_parameters()`` names (``image_encoder``,
    ``image_encoder.blocks.[0-5].*``, ``*.bias``). Returns the number of parameter
    tensors the patterns matched (all of them frozen now).

    Raises:
        ValueError: a pattern that matches no parameter (a typo, most likely).
    """
    if isinstance(patterns, str):
        patterns = [patterns]
    named = list(model.named_parameters())
    frozen = 0
    for pattern in patterns:
        if not any(matches(name, pattern) for name, _ in named):
            raise _unmatched_error(pattern, model, "freeze")
    for name, param in named:
        if any(matches(name, pattern) for pattern in patterns):
            param.requires_grad_(False)
            frozen += 1
    return frozen


def parameter_groups(
    model: nn.Module, lr: float, part_lrs: Mapping[str, float] | None = None
) -> list[dict[str, Any]]:
    """Optimizer parameter groups with one learning rate per part of the network.

    Each trainable parameter goes to the first pattern of ``part_lrs`` (in order) that
    matches its name (rules of :func:`freeze`), else to the ``"default"`` group with
    ``lr``. Groups are ``{"params", "param_names", "lr", "name"}`` (``param_names`` lets
    ASAM apply its weight-only rule); empty groups are dropped. Works with
    ``torch.optim`` classes and :func:`segbalance.optim.build_optimizer`.

    Raises:
        ValueError: a pattern that matches no parameter.
    """
    part_lrs = dict(part_lrs or {})
    named = list(model.named_parameters())
    for pattern in part_lrs:
        if not any(matches(name, pattern) for name, _ in named):
            raise _unmatched_error(pattern, model, "part_lrs")
    groups = {pattern: _group(pattern, value) for pattern, value in part_lrs.items()}
    default = _group("default", lr)
    for name, param in named:
        if not param.requires_grad:
            continue
        pattern = next((p for p in part_lrs if matches(name, p)), None)
        target = default if pattern is None else groups[pattern]
        target["params"].append(param)
        target["param_names"].append(name)
    ordered = [*groups.values(), default]
    return [group for group in ordered if group["params"]]


def _group(name: str, lr: float) -> dict[str, Any]:
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not lr >= 0:
        raise ValueError(f"Expected a learning rate >= 0 for {name!r} but got {lr!r}")
    return {"params": [], "param_names": [], "lr": float(lr), "name": name}
