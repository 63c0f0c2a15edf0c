"""Run ``segbalance`` in this process after installing one injected fault (test helper).

Usage: ``python _child.py FAULT -- segbalance-args...`` (the zygote calls ``install``
directly) where FAULT is one of ``none``; ``slow-fsync:SECONDS`` (every ``os.fsync`` of a
checkpoint temp file sleeps first: widens the window in which the temp file exists, so a
kill lands inside the write); ``enospc-save:N`` (the N-th ``torch.save`` writes a few
bytes, then raises ENOSPC); ``enospc-fsync:N`` (the N-th ``os.fsync`` of a regular file
raises ENOSPC). The fault is installed first, then ``segbalance.cli.main`` runs exactly as
``python -m segbalance`` would.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import time


def _nth_call_raises(original, n: int, before=None):
    calls = {"n": 0}

    def patched(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            if before is not None:
                before(*args)
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(*args, **kwargs)

    return patched


def install(fault: str) -> None:
    """Patch the process according to ``fault`` (see the module docstring)."""
    kind, _, arg = fault.partition(":")
    if kind == "none":
        return
    if kind == "slow-fsync":
        real_fsync, delay = os.fsync, float(arg)

        def slow_fsync(fd: int) -> None:
            # only checkpoint temp files: the other run files need not slow the run down
            if ".pt." in os.readlink(f"/proc/self/fd/{fd}"):
                time.sleep(delay)
            real_fsync(fd)

        os.fsync = slow_fsync
    elif kind == "enospc-fsync":
        real_fsync = os.fsync
        failing = _nth_call_raises(real_fsync, int(arg))

        def fsync_files(fd: int) -> None:
            # only regular files count: a folder fsync after a rename is best-effort
            return failing(fd) if stat.S_ISREG(os.fstat(fd).st_mode) else real_fsync(fd)

        os.fsync = fsync_files
    elif kind == "enospc-save":
        import torch

        # a full disk fails part-way: some bytes reach the temp file first
        torch.save = _nth_call_raises(
            torch.save, int(arg), before=lambda obj, handle, *a: handle.write(b"partial")
        )
    else:
        raise SystemExit(f"_child.py: unknown fault {fault!r}")


if __name__ == "__main__":
    fault, sep, *rest = sys.argv[1:]
    assert sep == "--", "usage: _child.py FAULT -- ARGS"
    install(fault)
    sys.argv = ["segbalance", *rest]
    from segbalance.cli import main

    main()
