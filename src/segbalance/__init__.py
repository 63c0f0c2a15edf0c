"""segbalance: fine-tuning 3D segmentation networks when the foreground is tiny.

Heavy modules (torch, monai) are imported lazily by the submodules that need them,
so ``import segbalance`` and ``segbalance --help`` stay fast.
"""

__version__ = "0.1.0"
