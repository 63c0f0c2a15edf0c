"""Self-contained HTML report of a compare folder.

>>> from segbalance.report import build_report
>>> build_report("runs/my_compare")          # writes runs/my_compare/report.html

Names are imported lazily; building a report never imports torch. The loss-landscape
probe whose output the report plots is :func:`segbalance.optim.landscape.loss_landscape`.
See ``docs/report.md``.
"""

from __future__ import annotations

from segbalance._lazy import lazy_exports

_EXPORTS = {
    "build_report": "html",
    "load_compare_folder": "inputs",
    "CompareFolder": "inputs",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
