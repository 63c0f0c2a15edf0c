"""Atomic file writes: a temp file in the same folder, fsync, rename, fsync the folder.

A crash (or ENOSPC) at any point leaves either the old file or the new one, never a
half-written file; the temp file is removed on failure. Torch-free.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temp file next to ``path``; on a clean exit it replaces ``path`` atomically."""
    target = Path(path)
    with _staged(target, mode) as (handle, tmp):
        yield handle
    _commit([(tmp, target)])


def atomic_write_texts(files: dict[Path, str]) -> None:
    """Write several UTF-8 files as one: every temp file is written and fsynced before
    any is renamed, so a failure (ENOSPC) on any of them leaves all the old files."""
    staged: list[tuple[str, Path]] = []
    try:
        for path, text in files.items():
            target = Path(path)
            with _staged(target, "w") as (handle, tmp):
                handle.write(text)
            staged.append((tmp, target))
    except BaseException:
        _discard(staged)
        raise
    _commit(staged)


@contextlib.contextmanager
def _staged(target: Path, mode: str) -> Iterator[tuple[IO, str]]:
    """A temp file next to ``target``, fsynced on a clean exit; removed on failure."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual file mode
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as handle:
            yield handle, tmp
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException as exc:
        _discard([(tmp, target)])
        _raise_naming(exc, target)


def _commit(staged: list[tuple[str, Path]]) -> None:
    """Rename each staged temp file onto its target (removing those left on failure)."""
    try:
        for tmp, target in staged:
            os.replace(tmp, target)
    except BaseException:
        _discard(staged)
        raise
    for directory in {target.parent for _, target in staged}:
        _fsync_dir(directory)


def _discard(staged: list[tuple[str, Path]]) -> None:
    for tmp, _ in staged:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _raise_naming(exc: BaseException, target: Path) -> None:
    if isinstance(exc, OSError) and exc.filename is None and exc.errno is not None:
        # ENOSPC from write/fsync names no file: say which one could not be written
        raise OSError(exc.errno, exc.strerror, str(target)) from exc
    raise exc


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_open(path, "w") as handle:
        handle.write(text)
    return Path(path)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def atomic_write_with(path: str | Path, writer: Callable[[IO], None]) -> Path:
    """Call ``writer(binary_file)`` on a temp file, then move it to ``path`` atomically."""
    with atomic_open(path, "wb") as handle:
        writer(handle)
    return Path(path)


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it; set back at once, at import time
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def _fsync_dir(directory: Path) -> None:
    # the rename is durable only once the folder entry is on disk (not possible on Windows)
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
