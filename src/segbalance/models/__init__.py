"""Networks: MONAI models and SegVol by name, pretrained loading, fine-tuning helpers.

>>> from segbalance.models import build_model, load_pretrained, freeze, parameter_groups
>>> model = build_model("unet", in_channels=1, out_channels=1, patch_size=(32, 32, 32))

Names are imported lazily (PEP 562) so that ``import segbalance.models`` does not import
torch or MONAI.
"""

from __future__ import annotations

from segbalance._lazy import lazy_exports

_EXPORTS = {
    "MODEL_NAMES": "factory",
    "build_model": "factory",
    "model_summary": "factory",
    "dynunet_kernels_strides": "dynunet_plan",
    "LoadReport": "pretrained",
    "freeze": "pretrained",
    "load_pretrained": "pretrained",
    "parameter_groups": "pretrained",
    "SegVol": "segvol.model",
    "load_segvol_checkpoint": "segvol.checkpoint",
    "zoom_out_zoom_in": "segvol.inference",
    "roi_from_mask": "segvol.inference",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
