"""Load published SegVol weights (METHODS §9.3 adapter rules).

Accepted files (local only; nothing is downloaded):

- ``SegVol_v1.pth`` (``{"model": {"module.image_encoder...": ...}, "epoch": ...}``) and
  checkpoints written by upstream ``train.py`` (extra ``optimizer``/``scheduler`` keys);
- HuggingFace ``pytorch_model.bin`` (keys ``model.image_encoder...``);
- ``ViT_pretrain.ckpt`` (``{"state_dict": {"model.encoder.<ViT key>": ...}}``): image
  encoder only; the prompt encoder and mask decoder keep their initial weights.
"""

from __future__ import annotations

import re
from pathlib import Path

from torch import Tensor, nn

from segbalance.errors import InputError
from segbalance.models.pretrained import (
    LoadReport,
    compare_state_dicts,
    extract_state_dict,
    read_checkpoint,
)

PARTS = ("image_encoder", "prompt_encoder", "mask_decoder", "text_encoder")
VIT_PRETRAIN_PREFIX = "model.encoder."
# MONAI >= 1.4 TransformerBlock always creates these (cross-attention is unused in SegVol).
TOLERATED_ENCODER_MISSING = re.compile(r"blocks\.\d+\.(norm_cross_attn|cross_attn)\.")
# A constant buffer that older transformers versions saved and newer ones do not create.
TOLERATED_TEXT_UNEXPECTED = re.compile(r"clip_text_model\.text_model\.embeddings\.position_ids$")


def _strip_one(key: str) -> str:
    for prefix in ("module.", "model."):
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def _split_parts(state: dict[str, Tensor], where: str) -> dict[str, dict[str, Tensor]]:
    """``{"image_encoder": {...}, ...}`` from full SegVol keys; anything else is an error."""
    parts: dict[str, dict[str, Tensor]] = {part: {} for part in PARTS}
    unknown = []
    for key, value in state.items():
        part, _, rest = _strip_one(key).partition(".")
        if part in parts and rest:
            parts[part][rest] = value
        else:
            unknown.append(key)
    if unknown:
        raise InputError(
            where,
            f"{len(unknown)} keys outside SegVol's four parts, e.g. {unknown[:5]}",
            "keys under image_encoder., prompt_encoder., mask_decoder., text_encoder. "
            "(optionally after one leading module. or model.)",
        )
    return parts


def _check_part(
    report: LoadReport, name: str, state: dict[str, Tensor], module: nn.Module
) -> LoadReport:
    """Compare one part; prefix the names with the part so the report reads as model keys."""
    part_report = compare_state_dicts(state, module.state_dict(), report.source)
    report.matched += [f"{name}.{k}" for k in part_report.matched]
    report.missing += [f"{name}.{k}" for k in part_report.missing]
    report.unexpected += [f"{name}.{k}" for k in part_report.unexpected]
    report.shape_mismatched += [(f"{name}.{k}", a, b) for k, a, b in part_report.shape_mismatched]
    return part_report


def load_segvol_checkpoint(model: nn.Module, path: str | Path) -> LoadReport:
    """Load SegVol weights into ``model`` (a :class:`~segbalance.models.SegVol`), in place.

    Rules: ``torch.load(weights_only=True)`` only; take ``ckpt["model"]`` (or
    ``ckpt["state_dict"]``); strip one leading ``module.`` or ``model.`` per key; split by
    ``image_encoder.``/``prompt_encoder.``/``mask_decoder.``/``text_encoder.``. The image
    encoder may lack only MONAI >= 1.4's ``blocks.N.(norm_cross_attn|cross_attn).*``; the
    other parts must match exactly. ``text_encoder.*`` is loaded when the model has a text
    encoder and reported as ``skipped`` otherwise. Nothing is loaded unless every check
    passes.

    Raises:
        InputError: unreadable or refused file, keys outside the four parts, missing,
            unexpected or shape-mismatched tensors (e.g. a model built with another
            ``img_size`` than the checkpoint's (32, 256, 256)).
    """
    where = str(path)
    state = extract_state_dict(read_checkpoint(path), where)
    report = LoadReport(source=where)
    if any(key.startswith(VIT_PRETRAIN_PREFIX) for key in state):
        encoder_state = {
            k[len(VIT_PRETRAIN_PREFIX) :]: v
            for k, v in state.items()
            if k.startswith(VIT_PRETRAIN_PREFIX)
        }
        # SimMIM's other tensors (its reconstruction head) are not part of SegVol.
        report.skipped = [k for k in state if not k.startswith(VIT_PRETRAIN_PREFIX)]
        to_load = {"image_encoder": encoder_state}
    else:
        parts = _split_parts(state, where)
        to_load = {part: parts[part] for part in PARTS[:3]}
        if model.text_encoder is not None:
            to_load["text_encoder"] = parts["text_encoder"]
        else:
            report.skipped = [f"text_encoder.{k}" for k in parts["text_encoder"]]

    problems = []
    for part, part_state in to_load.items():
        part_report = _check_part(report, part, part_state, getattr(model, part))
        missing, unexpected = part_report.missing, part_report.unexpected
        if part == "image_encoder":
            missing = [k for k in missing if not TOLERATED_ENCODER_MISSING.match(k)]
        if part == "text_encoder":
            tolerated = [k for k in unexpected if TOLERATED_TEXT_UNEXPECTED.match(k)]
            report.unexpected = [
                k for k in report.unexpected if k[len(part) + 1 :] not in tolerated
            ]
            report.skipped += [f"{part}.{k}" for k in tolerated]
            unexpected = [k for k in unexpected if k not in tolerated]
        if missing or unexpected or part_report.shape_mismatched:
            problems.append(
                f"{part}: missing {missing[:5]}, unexpected {unexpected[:5]}, "
                f"shape-mismatched {part_report.shape_mismatched[:3]}"
            )
    if problems:
        raise InputError(
            where,
            "does not fit this SegVol model: " + "; ".join(problems),
            "a SegVol checkpoint for the same img_size, patch_size and widths",
        )
    for part, part_state in to_load.items():
        getattr(model, part).load_state_dict(part_state, strict=False)
    untouched = [p for p in PARTS[:3] if p not in to_load]
    for part in untouched:  # ViT_pretrain.ckpt: the decoders keep their initial weights
        report.missing += [f"{part}.{k}" for k in getattr(model, part).state_dict()]
    return report
