"""``python -m segbalance`` (also what torchrun runs)."""

from segbalance.cli import main

main()
