"""On-disk cache of preprocessed cases as memory-mappable ``.npy`` arrays.

Layout: ``$SEGBALANCE_CACHE/preprocessed/<dataset>-<key>/<case>@<fingerprint>/`` where
``key`` hashes the preprocessing settings and the dataset folder, and ``fingerprint``
hashes the size and mtime of the case's source files. A second run finds every case and
preprocesses nothing; a changed file only changes its own case's fingerprint. Nothing is
ever written inside the dataset folder. Each case folder holds:

- ``image.npy`` float32 ``(C, *S)``; ``label.npy`` uint8/uint16 ``(*S)``;
- ``components.npy`` uint16/uint32 ``(*S)``: 26-connected components of the union
  foreground (labelled once on the full volume, used for inverse lesion weights);
- ``fg_<c>.npy`` int32 ``(n, 3)``: coordinates of class ``c`` voxels, ordered by
  component, and ``fg_<c>_cc.npy`` their component ids (foreground oversampling);
- ``meta.json``: shapes, spacing, affines, orientation, class voxel counts.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from segbalance.data.layout import CaseFiles, DatasetLayout, open_dataset
from segbalance.data.preprocess import PreprocessSettings, preprocess_case
from segbalance.data.reader import read_case
from segbalance.errors import InputError
from segbalance.stats import label_components

# Memory maps kept open at once (each holds a file descriptor).
MAX_OPEN_CASES = 128
Progress = Callable[[int, int, str], None]


def cache_root() -> Path:
    """``$SEGBALANCE_CACHE`` or ``~/.cache/segbalance``."""
    return Path(os.environ.get("SEGBALANCE_CACHE") or "~/.cache/segbalance").expanduser()


def dataset_cache_dir(layout: DatasetLayout, settings: PreprocessSettings) -> Path:
    """Cache folder of one dataset under one set of preprocessing settings."""
    key = hashlib.sha256(f"{settings.key()}|{layout.root}".encode()).hexdigest()[:16]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", layout.name).strip("._") or "dataset"
    return cache_root() / "preprocessed" / f"{slug}-{key}"


def case_fingerprint(layout: DatasetLayout, case: CaseFiles) -> str:
    """Hash of (relative path, size, mtime) of every source file of the case."""
    parts = []
    for path in case.files:
        stat = path.stat()
        parts.append([layout.relative(path), stat.st_size, stat.st_mtime_ns])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


class CachedCase:
    """A preprocessed case; arrays are opened as read-only memory maps on first use."""

    def __init__(self, name: str, directory: Path, owner: PreprocessedDataset) -> None:
        self.name = name
        self.directory = directory
        self.meta: dict = json.loads((directory / "meta.json").read_text())
        self._owner = owner
        self._arrays: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._locations: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.meta["shape"])  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(self.meta["spacing"])  # type: ignore[return-value]

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(image (C, *S) float32, label (*S), components (*S))`` memory maps."""
        if self._arrays is None:
            d = self.directory
            self._arrays = tuple(
                np.load(d / f"{n}.npy", mmap_mode="r") for n in ("image", "label", "components")
            )  # type: ignore[assignment]
        self._owner._touch(self)
        return self._arrays  # type: ignore[return-value]

    @property
    def image(self) -> np.ndarray:
        return self.arrays()[0]

    @property
    def label(self) -> np.ndarray:
        return self.arrays()[1]

    @property
    def components(self) -> np.ndarray:
        return self.arrays()[2]

    def present_classes(self) -> list[int]:
        """Foreground classes with at least one voxel in this case."""
        return [int(c) for c, n in self.meta["class_voxels"].items() if int(c) != 0 and n > 0]

    def locations(self, cls: int) -> tuple[np.ndarray, np.ndarray]:
        """``(coords (n, 3) int32, component ids (n,))`` of class ``cls`` voxels."""
        if cls not in self._locations:
            d = self.directory
            self._locations[cls] = (np.load(d / f"fg_{cls}.npy"), np.load(d / f"fg_{cls}_cc.npy"))
        return self._locations[cls]

    def _close(self) -> None:
        self._arrays = None

    def __getstate__(self) -> dict:
        # pickling a memory map would copy the array; worker processes reopen it
        state = self.__dict__.copy()
        state["_arrays"] = None
        return state


class PreprocessedDataset:
    """Every preprocessed case of a dataset, by name (see :func:`preprocess_dataset`)."""

    def __init__(
        self, layout: DatasetLayout, settings: PreprocessSettings, directory: Path
    ) -> None:
        self.layout = layout
        self.settings = settings
        self.directory = directory
        self.cases: dict[str, CachedCase] = {}
        self._open: OrderedDict[str, CachedCase] = OrderedDict()

    @property
    def names(self) -> list[str]:
        return list(self.cases)

    @property
    def classes(self) -> dict[int, str]:
        return self.layout.classes

    @property
    def n_channels(self) -> int:
        return self.layout.n_channels

    def __getitem__(self, name: str) -> CachedCase:
        try:
            return self.cases[name]
        except KeyError:
            from segbalance.errors import did_you_mean

            raise InputError(
                name,
                "case not in the preprocessed dataset" + did_you_mean(name, self.names),
                "a case of the dataset",
            ) from None

    def __len__(self) -> int:
        return len(self.cases)

    def _touch(self, case: CachedCase) -> None:
        self._open[case.name] = case
        self._open.move_to_end(case.name)
        while len(self._open) > MAX_OPEN_CASES:
            _, oldest = self._open.popitem(last=False)
            oldest._close()

    def __getstate__(self) -> dict:
        # worker processes reopen their own memory maps
        state = self.__dict__.copy()
        state["_open"] = OrderedDict()
        return state


def preprocess_dataset(
    dataset: str | Path | DatasetLayout,
    settings: PreprocessSettings | None = None,
    *,
    cases: Iterable[str] | None = None,
    progress: Progress | None = None,
) -> PreprocessedDataset:
    """Preprocess (or find in the cache) every case of a dataset.

    Args:
        dataset: dataset folder or a parsed :class:`DatasetLayout`.
        settings: preprocessing settings (default :class:`PreprocessSettings`).
        cases: names of the cases to prepare (default: all).
        progress: ``progress(done, total, case_name)`` after each case.

    Returns:
        the cases as memory-mapped arrays; see the module docstring for their contents.
    """
    layout = dataset if isinstance(dataset, DatasetLayout) else open_dataset(dataset)
    settings = settings or PreprocessSettings()
    directory = dataset_cache_dir(layout, settings)
    directory.mkdir(parents=True, exist_ok=True)
    info = {"source": str(layout.root), "layout": layout.layout, "settings_key": settings.key()}
    (directory / "source.json").write_text(json.dumps(info, indent=1))
    selected = [layout.case(n) for n in cases] if cases is not None else list(layout.cases)
    out = PreprocessedDataset(layout, settings, directory)
    for index, case in enumerate(selected):
        case_dir = directory / f"{case.name}@{case_fingerprint(layout, case)}"
        if not (case_dir / "meta.json").is_file():
            _write_case(layout, case, settings, case_dir)
            _remove_stale(directory, case.name, keep=case_dir)
        out.cases[case.name] = CachedCase(case.name, case_dir, out)
        if progress is not None:
            progress(index + 1, len(selected), case.name)
    return out


def _write_case(
    layout: DatasetLayout, case: CaseFiles, settings: PreprocessSettings, final: Path
) -> None:
    raw = read_case(layout, case)
    arrays = preprocess_case(raw, settings, layout.channels)
    components, n_components = label_components(arrays.label > 0)
    comp_dtype = np.uint16 if n_components < 2**16 else np.uint32
    components = components.astype(comp_dtype)
    tmp = final.with_name(f"{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    try:
        np.save(tmp / "image.npy", arrays.image)
        np.save(tmp / "label.npy", arrays.label)
        np.save(tmp / "components.npy", components)
        class_voxels = {}
        for cls in layout.classes:
            mask = arrays.label == cls
            class_voxels[str(cls)] = int(mask.sum())
            if cls == 0:
                continue
            coords = np.argwhere(mask).astype(np.int32)
            ids = components[mask]  # same C order as argwhere
            order = np.argsort(ids, kind="stable")
            np.save(tmp / f"fg_{cls}.npy", coords[order])
            np.save(tmp / f"fg_{cls}_cc.npy", ids[order])
        meta = {
            **arrays.meta,
            "case": case.name,
            "class_voxels": class_voxels,
            "n_components": n_components,
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))  # written last: marks completion
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "meta.json").is_file():  # not a concurrent writer that won
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


#: a temp folder older than this is a crashed writer's leftover (a live one is younger)
STALE_TMP_SECONDS = 3600.0


def _remove_stale(directory: Path, name: str, keep: Path) -> None:
    """Remove the case's folders of other fingerprints and old crash leftovers.

    Temp folders of concurrent writers (DDP ranks, compare jobs) are left alone.
    """
    now = time.time()
    for other in directory.glob(f"{glob_escape(name)}@*"):
        suffix = other.name[len(name) + 1 :]
        if other == keep or not re.fullmatch(r"[0-9a-f]{16}(\.tmp-.*)?", suffix):
            continue
        if ".tmp-" in suffix:
            try:
                if now - other.stat().st_mtime < STALE_TMP_SECONDS:
                    continue
            except FileNotFoundError:
                continue
        shutil.rmtree(other, ignore_errors=True)


def glob_escape(text: str) -> str:
    """Escape glob metacharacters in a literal name."""
    return re.sub(r"([*?\[])", r"[\1]", text)
