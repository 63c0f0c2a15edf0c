"""A fork server for CLI runs: imports segbalance, torch and MONAI once, forks per run.

Starting ``python -m segbalance`` costs ~10 s of imports on the 2-core CI machine, and the
kill trials need ~25 runs. The zygote pays the imports once, then every run is a real
child process (``os.fork``) that executes ``segbalance.cli.main`` with its own argv,
working folder, environment, stdout/stderr files and injected fault (``_child.install``),
so ``SIGKILL`` hits a real process that really writes files. The zygote runs no torch
operation itself, so no thread pool exists when it forks.

Protocol (one JSON object per line on stdin, one reply per line on stdout):
``{"run": [...args], "fault": "none", "out": PATH, "err": PATH, "cwd": DIR, "env": {}}``
-> ``{"pid": N}``; ``{"wait": N}`` -> ``{"status": exit code, or -signal}``.
"""

from __future__ import annotations

import json
import os
import sys


def _preload() -> None:
    import monai.networks.nets  # noqa: F401  (the slow lazy import of the model factory)
    import torch  # noqa: F401

    import segbalance.cli
    import segbalance.config
    import segbalance.data.imbalance
    import segbalance.evaluate.run
    import segbalance.experiments.compare
    import segbalance.report
    import segbalance.train
    import segbalance.train.loop  # noqa: F401


def _child(request: dict) -> None:
    """In the forked child: redirect, patch, run the CLI, leave with its exit code."""
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    for fd, path in ((1, request["out"]), (2, request["err"])):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    code = 1
    try:
        os.chdir(request.get("cwd") or os.getcwd())
        os.environ.update(request.get("env") or {})
        from tests.reliability._child import install

        install(request.get("fault", "none"))
        sys.argv = ["segbalance", *request["run"]]
        from segbalance.cli import main

        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # as the interpreter would: print the traceback, exit 1
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve() -> None:
    """Answer requests until stdin closes."""
    _preload()
    print(json.dumps({"ready": os.getpid()}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        if "wait" in request:
            _, status = os.waitpid(int(request["wait"]), 0)
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            print(json.dumps({"status": code}), flush=True)
            continue
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            _child(request)
        print(json.dumps({"pid": pid}), flush=True)


if __name__ == "__main__":
    serve()
