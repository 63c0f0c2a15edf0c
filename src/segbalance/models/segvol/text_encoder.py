"""SegVol's optional text prompt encoder: a frozen CLIP text model and a trainable
``dim_align`` projection (``network/model.py``: ``TextEncoder``).

Needs the optional ``transformers`` package and a *local* folder with the CLIP tokenizer
files (SegVol ships them as ``config/clip``). Nothing is ever downloaded: the tokenizer is
read with ``local_files_only=True`` and the CLIP weights come from the SegVol checkpoint
(``text_encoder.clip_text_model.*``), as upstream builds ``CLIPTextModel(CLIPTextConfig())``.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from segbalance.errors import InputError

PROMPT_TEMPLATE = "A computerized tomography of a {}."
# Width of CLIP's default text model (CLIPTextConfig().hidden_size).
CLIP_TEXT_WIDTH = 512


def _transformers() -> Any:
    try:
        return importlib.import_module("transformers")
    except ImportError:
        raise ImportError(
            "SegVol text prompts (text=True) need the optional 'transformers' package, which "
            "is not installed; install it (pip install 'transformers>=4.36') or use text=False"
        ) from None


class TextEncoder(nn.Module):
    """Class names -> text embeddings ``(B, hidden_size)`` via the template
    ``"A computerized tomography of a {name}."``.

    Args:
        clip_dir: local folder with the CLIP tokenizer files (``tokenizer.json`` or
            ``vocab.json`` + ``merges.txt``).
        hidden_size: output width (the SegVol token width).
    """

    def __init__(self, clip_dir: str | Path | None, hidden_size: int) -> None:
        super().__init__()
        if clip_dir is None:
            raise ValueError(
                "Expected clip_dir (a local folder with the CLIP tokenizer files, e.g. "
                "SegVol's config/clip) for text=True but got None"
            )
        folder = Path(clip_dir)
        if not folder.is_dir():
            raise InputError(str(folder), "CLIP tokenizer folder not found", "a local folder")
        transformers = _transformers()
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(
                str(folder), local_files_only=True
            )
        except (OSError, ValueError) as exc:
            raise InputError(
                str(folder),
                f"cannot load a CLIP tokenizer ({type(exc).__name__})",
                "the tokenizer files of openai/clip-vit-base-patch32 saved locally",
            ) from None
        self.clip_text_model = transformers.CLIPTextModel(transformers.CLIPTextConfig())
        self.clip_text_model.requires_grad_(False)  # frozen, as upstream
        self.dim_align = nn.Linear(CLIP_TEXT_WIDTH, hidden_size)

    def forward(self, names: Sequence[str]) -> Tensor:
        """``names``: one class name per sample -> ``(len(names), hidden_size)``."""
        texts = [PROMPT_TEMPLATE.format(name) for name in names]
        device = self.dim_align.weight.device
        tokens = self.tokenizer(texts, padding=True, return_tensors="pt")
        tokens = {key: value.to(device) for key, value in tokens.items()}
        pooled = self.clip_text_model(**tokens).pooler_output
        return self.dim_align(pooled)
