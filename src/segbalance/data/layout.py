"""Dataset folder layouts: Medical Segmentation Decathlon and nnU-Net v2 raw.

Only reads ``dataset.json`` and lists files; no image is opened here. Every path is
checked to stay inside the dataset folder (``../`` in a case name, absolute paths and
symlinks pointing outside are refused).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from segbalance.errors import InputError

Layout = Literal["msd", "nnunet_v2"]
NIFTI_ENDINGS = (".nii.gz", ".nii")


@dataclass(frozen=True)
class CaseFiles:
    """Files of one training case.

    ``images`` holds one path per channel (nnU-Net v2) or a single 3D/4D file (MSD,
    channels last in the file).
    """

    name: str
    images: tuple[Path, ...]
    label: Path

    @property
    def files(self) -> tuple[Path, ...]:
        """Every source file of the case (images first, label last)."""
        return (*self.images, self.label)


@dataclass(frozen=True)
class DatasetLayout:
    """A parsed dataset folder: what ``dataset.json`` declares and the files it names."""

    root: Path
    layout: Layout
    name: str
    channels: dict[int, str]  # channel index -> modality / channel name
    classes: dict[int, str]  # label value -> class name (0 = background included)
    cases: tuple[CaseFiles, ...]

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    @property
    def foreground_classes(self) -> dict[int, str]:
        """Declared classes without the background (value 0)."""
        return {k: v for k, v in self.classes.items() if k != 0}

    def case(self, name: str) -> CaseFiles:
        for case in self.cases:
            if case.name == name:
                return case
        from segbalance.errors import did_you_mean

        names = [c.name for c in self.cases]
        raise InputError(
            name, "no such case" + did_you_mean(name, names), f"one of {len(names)} cases"
        )

    def relative(self, path: Path) -> str:
        """Path relative to the dataset root, for messages."""
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)


Reporter = Callable[[InputError], None]


def _raise(err: InputError) -> None:
    raise err


def open_dataset(path: str | Path, *, report: Reporter | None = None) -> DatasetLayout:
    """Parse a dataset folder (MSD or nnU-Net v2 raw) and list its cases.

    Args:
        path: folder holding ``dataset.json``, ``imagesTr/`` and ``labelsTr/``.
        report: called with each per-case problem (missing file, path escaping the
            folder...) instead of raising it; the faulty case is then left out. Problems
            with the folder or ``dataset.json`` itself always raise.

    Raises:
        InputError: naming the file or case and what was expected.
    """
    report = report or _raise
    root = Path(path).expanduser()
    if not root.is_dir():
        raise InputError(str(path), "not a folder", "a dataset folder holding dataset.json")
    root = root.resolve()
    meta_path = root / "dataset.json"
    if not meta_path.is_file():
        raise InputError(str(meta_path), "missing", "dataset.json (MSD or nnU-Net v2 raw layout)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(str(meta_path), f"invalid JSON ({exc})", "a JSON object") from None
    if not isinstance(meta, dict):
        raise InputError(str(meta_path), "not a JSON object", "a JSON object")
    if "channel_names" in meta:
        layout = _parse_nnunet(root, meta, meta_path, report)
    elif "training" in meta:
        layout = _parse_msd(root, meta, meta_path, report)
    else:
        raise InputError(
            str(meta_path),
            "neither 'training' (MSD) nor 'channel_names' (nnU-Net v2) is declared",
            "an MSD or nnU-Net v2 dataset.json",
        )
    if not layout.cases:
        raise InputError(
            str(root), "the dataset has no usable training case", "at least one image/label pair"
        )
    return layout


def _parse_msd(root: Path, meta: dict, meta_path: Path, report: Reporter) -> DatasetLayout:
    channels = _int_keyed(meta.get("modality", {"0": "image"}), meta_path, "modality")
    classes = _int_keyed(meta.get("labels"), meta_path, "labels")
    _check_classes(classes, meta_path)
    training = meta["training"]
    if not isinstance(training, list):
        raise InputError(str(meta_path), "'training' is not a list", "a list of {image, label}")
    cases: list[CaseFiles] = []
    seen: set[str] = set()
    for index, entry in enumerate(training):
        where = f"{meta_path.name}: training[{index}]"
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("image"), str)
            or not isinstance(entry.get("label"), str)
        ):
            report(
                InputError(
                    where, "entry lacks 'image' or 'label' strings", '{"image": ..., "label": ...}'
                )
            )
            continue
        name = _strip_ending(Path(entry["image"]).name)
        where = name or where
        try:
            image = _inside(root, entry["image"], where, "image")
            label = _inside(root, entry["label"], where, "label")
        except InputError as err:
            report(err)
            continue
        if name in seen:
            report(InputError(name, "case listed twice in dataset.json", "unique case names"))
            continue
        seen.add(name)
        cases.append(CaseFiles(name=name, images=(image,), label=label))
    return DatasetLayout(
        root, "msd", str(meta.get("name", root.name)), channels, classes, tuple(cases)
    )


def _parse_nnunet(root: Path, meta: dict, meta_path: Path, report: Reporter) -> DatasetLayout:
    channels = _int_keyed(meta.get("channel_names"), meta_path, "channel_names")
    labels = meta.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise InputError(
            str(meta_path), "'labels' missing or empty", '{"background": 0, "name": 1, ...}'
        )
    classes: dict[int, str] = {}
    for name, value in labels.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(
                str(meta_path),
                f"label {name!r} has value {value!r} (region-based labels are not supported)",
                "one integer per label name",
            )
        classes[value] = str(name)
    _check_classes(classes, meta_path)
    ending = meta.get("file_ending", ".nii.gz")
    if ending not in NIFTI_ENDINGS:
        raise InputError(
            str(meta_path), f"file_ending {ending!r} is not NIfTI", "'.nii.gz' or '.nii'"
        )
    images_dir, labels_dir = root / "imagesTr", root / "labelsTr"
    for folder in (images_dir, labels_dir):
        if not folder.is_dir():
            raise InputError(str(folder), "missing", "a folder of NIfTI files")
    pattern = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})" + re.escape(ending) + "$")
    found: dict[str, dict[int, Path]] = {}
    for file in sorted(images_dir.iterdir()):
        match = pattern.match(file.name)
        if match:
            found.setdefault(match["case"], {})[int(match["channel"])] = file
    label_names = {f.name[: -len(ending)] for f in labels_dir.iterdir() if f.name.endswith(ending)}
    cases: list[CaseFiles] = []
    for name in sorted(set(found) | label_names):
        chans = found.get(name, {})
        try:
            missing = [c for c in channels if c not in chans]
            if missing:
                expected = f"imagesTr/{name}_{missing[0]:04d}{ending} (channels {sorted(channels)})"
                raise InputError(name, f"missing image channel(s) {missing}", expected)
            extra = sorted(set(chans) - set(channels))
            if extra:
                raise InputError(
                    name,
                    f"undeclared image channel(s) {extra}",
                    f"channels {sorted(channels)} as in channel_names",
                )
            if name not in label_names:
                raise InputError(name, "no label file", f"labelsTr/{name}{ending}")
            images = tuple(
                _inside(root, f"imagesTr/{chans[c].name}", name, "image") for c in sorted(channels)
            )
            label = _inside(root, f"labelsTr/{name}{ending}", name, "label")
        except InputError as err:
            report(err)
            continue
        cases.append(CaseFiles(name=name, images=images, label=label))
    declared = meta.get("numTraining")
    if isinstance(declared, int) and declared != len(found.keys() | label_names):
        report(
            InputError(
                str(meta_path),
                f"numTraining is {declared} but imagesTr/labelsTr hold {len(found.keys() | label_names)} cases",
                "numTraining equal to the number of cases",
            )
        )
    return DatasetLayout(
        root, "nnunet_v2", str(meta.get("name", root.name)), channels, classes, tuple(cases)
    )


def _inside(root: Path, relative: str, where: str, kind: str) -> Path:
    """Resolve ``relative`` under ``root``; refuse escapes and missing files."""
    candidate = Path(relative)
    if candidate.is_absolute() or ".." in candidate.parts:
        raise InputError(
            where,
            f"{kind} path {relative!r} escapes the dataset folder",
            "a path inside the dataset folder",
        )
    joined = root / candidate
    resolved = joined.resolve()
    if not resolved.is_relative_to(root):
        raise InputError(
            where,
            f"{kind} {relative!r} is a symlink pointing outside the dataset folder ({resolved})",
            "files inside the dataset folder",
        )
    if not resolved.exists():
        raise InputError(
            where, f"{kind} file {relative!r} listed in dataset.json is missing", "an existing file"
        )
    if not resolved.is_file():
        raise InputError(where, f"{kind} {relative!r} is not a file", "a NIfTI file")
    return joined


def _strip_ending(filename: str) -> str:
    for ending in NIFTI_ENDINGS:
        if filename.endswith(ending):
            return filename[: -len(ending)]
    return filename


def _int_keyed(mapping: object, meta_path: Path, key: str) -> dict[int, str]:
    if not isinstance(mapping, dict) or not mapping:
        raise InputError(
            str(meta_path),
            f"'{key}' missing or empty",
            f'a mapping like {{"0": "name"}} under {key!r}',
        )
    out: dict[int, str] = {}
    for k, v in mapping.items():
        try:
            out[int(k)] = str(v)
        except (TypeError, ValueError):
            raise InputError(
                str(meta_path), f"'{key}' has non-integer key {k!r}", "integer keys"
            ) from None
    return dict(sorted(out.items()))


def _check_classes(classes: dict[int, str], meta_path: Path) -> None:
    if 0 not in classes:
        raise InputError(
            str(meta_path), "labels do not declare the background value 0", "0: background"
        )
    if min(classes) < 0 or len(classes) < 2:
        raise InputError(
            str(meta_path),
            f"labels {sorted(classes)} are not a background plus foreground classes",
            "values 0, 1, ... with at least one foreground class",
        )
