"""Self-contained HTML report of a compare folder.

>>> from segbalance.report import build_report
>>> build_report("runs/my_compare")          # writes runs/my_compare/report.html

Names are imported lazily; building a report never imports torch. The loss-landscape
probe whose output the report plots is :func:`segbalance.optim.landscape.loss_landscape`.
See ``docs/report.md``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "build_report": "html",
    "load_compare_folder": "inputs",
    "CompareFolder": "inputs",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'segbalance.report' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"segbalance.report.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
