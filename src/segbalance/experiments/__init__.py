"""Comparison grids (``segbalance compare``) and the paired statistics behind them.

``experiments.stats`` is torch-free; ``experiments.compare`` runs cells as subprocesses.
"""
