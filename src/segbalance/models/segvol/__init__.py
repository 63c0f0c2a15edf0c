"""SegVol (Du et al., NeurIPS 2024): model, published-checkpoint adapter, zoom-out-zoom-in.

See ``docs/models.md`` and METHODS §9.
"""

from segbalance.models.segvol.checkpoint import load_segvol_checkpoint
from segbalance.models.segvol.inference import roi_from_mask, zoom_out_zoom_in
from segbalance.models.segvol.model import SegVol
from segbalance.models.segvol.prompts import boxes_from_label, points_from_label

__all__ = [
    "SegVol",
    "boxes_from_label",
    "load_segvol_checkpoint",
    "points_from_label",
    "roi_from_mask",
    "zoom_out_zoom_in",
]
