"""Training patch loader: foreground oversampling, augmentation, inverse lesion weights.

Batch ``i`` is a pure function of ``(seed, i)``: patch ``b`` of it draws from
``numpy.random.default_rng([seed, i, b])``. Worker processes can therefore build any
batch in any order, and resuming only needs the position (``state_dict()``).

Batches are tuples of torch tensors:
``inputs`` float32 ``(B, C, *patch)``, ``target`` int64 ``(B, 1, *patch)`` and, with
``with_weights=True``, ``weight`` float32 ``(B, 1, *patch)``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from segbalance.data.augment import (
    AugmentSettings,
    IntensityDraw,
    SpatialDraw,
    apply_intensity,
    crop_with_padding,
    draw_intensity,
    draw_spatial,
    flip_rotate,
    sample_affine,
)
from segbalance.data.cache import CachedCase, PreprocessedDataset
from segbalance.errors import InputError, did_you_mean
from segbalance.stats import inverse_weights_from_components

FOREGROUND_SAMPLING = ("voxel", "lesion")


def patch_weights(components: np.ndarray, ignore_mask: np.ndarray | None = None) -> np.ndarray:
    """Inverse lesion-volume weights of one patch from its (cropped) component map.

    ``w = clip(N / ((K + 1) |cc(x)|), 1, 2e5)`` with N the patch's (non-ignored) voxels, K
    the number of non-zero component ids present, the background one component, and
    weight 0 on ignored voxels (METHODS §3, faithful per-patch form).

    Args:
        components: integer ``(*P)`` component ids (0 = background), e.g. a crop of the
            cached full-volume component map.
        ignore_mask: optional boolean ``(*P)``, True where a voxel is ignored.

    Returns:
        float32 ``(*P)``.
    """
    valid = None if ignore_mask is None else ~np.asarray(ignore_mask, dtype=bool)
    return inverse_weights_from_components(components, valid)


class PatchLoader:
    """Deterministic, resumable iterator over training batches.

    Args:
        data: preprocessed cases (:func:`segbalance.data.preprocess_dataset`).
        patch_size: ``(D, H, W)`` voxels in the preprocessed (RAS) orientation.
        batch_size: patches per batch.
        cases: names to sample from (default: every case of ``data``).
        oversample_foreground: share of patches centred on a foreground voxel of a class
            chosen at random among those present in the case (nnU-Net default 1/3). The
            choice is deterministic: patch ``j`` of the stream is forced when
            ``floor((j + 1) p) > floor(j p)``, so exactly ``floor(n p)`` of the first ``n``.
        foreground_sampling: ``voxel`` (uniform over the class's voxels, as nnU-Net) or
            ``lesion`` (uniform over its lesions, then a voxel: tiny lesions as often as big).
        augment: :class:`AugmentSettings` (default settings if None; ``AugmentSettings.off()``).
        with_weights: add the per-patch inverse lesion weights as a third tensor.
        seed: stream seed.
        batches_per_epoch: length of one epoch (``len(loader)``).
        num_workers: worker processes (0: build batches in the calling process).
    """

    def __init__(
        self,
        data: PreprocessedDataset,
        *,
        patch_size: Sequence[int],
        batch_size: int = 2,
        cases: Sequence[str] | None = None,
        oversample_foreground: float = 1 / 3,
        foreground_sampling: str = "voxel",
        augment: AugmentSettings | None = None,
        with_weights: bool = False,
        seed: int = 0,
        batches_per_epoch: int = 250,
        num_workers: int = 0,
    ) -> None:
        self.patch = tuple(int(p) for p in patch_size)
        if len(self.patch) != 3 or min(self.patch) < 1:
            raise ValueError(f"patch_size: expected 3 positive sizes but got {tuple(patch_size)}")
        if batch_size < 1 or batches_per_epoch < 1 or num_workers < 0:
            raise ValueError(
                f"batch_size, batches_per_epoch: expected >= 1 and num_workers >= 0 but got "
                f"{batch_size}, {batches_per_epoch}, {num_workers}"
            )
        if not 0.0 <= oversample_foreground <= 1.0:
            raise ValueError(
                f"oversample_foreground: expected a share in [0, 1] but got {oversample_foreground}"
            )
        if foreground_sampling not in FOREGROUND_SAMPLING:
            raise ValueError(
                f"foreground_sampling: expected one of {FOREGROUND_SAMPLING} but got {foreground_sampling!r}"
            )
        names = list(cases) if cases is not None else data.names
        for name in names:
            if name not in data.cases:
                raise InputError(
                    name,
                    "case not in the preprocessed dataset" + did_you_mean(name, data.names),
                    "a case of the dataset",
                )
        if not names:
            raise InputError("cases", "no training case", "at least one case")
        self.data = data
        self.cases: list[CachedCase] = [data[n] for n in names]
        self.batch_size = int(batch_size)
        self.share = Fraction(oversample_foreground).limit_denominator(10_000)
        self.foreground_sampling = foreground_sampling
        self.augment = augment if augment is not None else AugmentSettings()
        self.planes = self.augment.planes(self.patch)
        self.with_weights = with_weights
        self.seed = int(seed)
        self.batches_per_epoch = int(batches_per_epoch)
        self.num_workers = int(num_workers)
        self.position = 0
        self._lesion_index: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}

    # ---- position / resume -------------------------------------------------------
    @property
    def epoch(self) -> int:
        """Index of the epoch the next batch belongs to."""
        return self.position // self.batches_per_epoch

    def __len__(self) -> int:
        return self.batches_per_epoch

    def state_dict(self) -> dict:
        """Plain containers only (``torch.load(weights_only=True)`` reads them)."""
        return {
            "seed": self.seed,
            "position": self.position,
            "batch_size": self.batch_size,
            "patch_size": list(self.patch),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore the position (the next batch is ``batch(state['position'])``)."""
        if int(state["seed"]) != self.seed or int(state["batch_size"]) != self.batch_size:
            raise ValueError(
                f"loader state: expected seed {self.seed} and batch_size {self.batch_size} but got "
                f"{state['seed']} and {state['batch_size']}"
            )
        self.position = int(state["position"])

    # ---- iteration ---------------------------------------------------------------
    def __iter__(self) -> Iterator[tuple]:
        """Yield the remaining batches of the current epoch, advancing ``position``."""
        end = (self.epoch + 1) * self.batches_per_epoch
        if self.num_workers == 0:
            while self.position < end:
                batch = self.batch(self.position)
                self.position += 1
                yield batch
            return
        for batch in self._worker_loader(range(self.position, end)):
            self.position += 1
            yield batch

    def _worker_loader(self, indices: range):
        import torch

        loader = torch.utils.data.DataLoader(
            _BatchDataset(self),
            batch_size=None,
            sampler=list(indices),
            num_workers=self.num_workers,
            worker_init_fn=_worker_init,
            persistent_workers=False,
            prefetch_factor=2,
        )
        return iter(loader)

    # ---- one batch ---------------------------------------------------------------
    def batch(self, index: int) -> tuple:
        """Build batch ``index`` (a pure function of ``(seed, index)``)."""
        import torch

        samples = []
        for b in range(self.batch_size):
            rng = self._rng(index, b)
            samples.append(self._render(self._plan(rng, int(index) * self.batch_size + b), rng))
        inputs = torch.from_numpy(np.stack([s[0] for s in samples]))
        target = torch.from_numpy(np.stack([s[1] for s in samples])[:, None].astype(np.int64))
        if not self.with_weights:
            return inputs, target
        weight = torch.from_numpy(np.stack([patch_weights(s[2]) for s in samples])[:, None])
        return inputs, target, weight

    def plan(self, index: int) -> list[PatchPlan]:
        """The random choices behind batch ``index`` (case, position, augmentation)."""
        return [
            self._plan(self._rng(index, b), int(index) * self.batch_size + b)
            for b in range(self.batch_size)
        ]

    def forced_foreground(self, j: int) -> bool:
        """Whether patch ``j`` of the stream is centred on foreground."""
        p = self.share
        return (j + 1) * p.numerator // p.denominator > j * p.numerator // p.denominator

    def _rng(self, index: int, b: int) -> np.random.Generator:
        # one generator per patch: plan() can replay the choices without the noise draws
        return np.random.default_rng([self.seed, int(index), b])

    def _plan(self, rng: np.random.Generator, j: int) -> PatchPlan:
        case = self.cases[int(rng.integers(len(self.cases)))]
        shape = case.shape
        low = [min(0, s - p) for s, p in zip(shape, self.patch, strict=True)]
        high = [max(0, s - p) for s, p in zip(shape, self.patch, strict=True)]
        forced = self.forced_foreground(j)
        cls, voxel = self._foreground_voxel(rng, case) if forced else (None, None)
        if voxel is None:
            start = [int(rng.integers(lo, hi + 1)) for lo, hi in zip(low, high, strict=True)]
        else:
            # centred on the voxel, shifted to stay inside the (padded) volume: the voxel
            # always lies in the patch
            start = [
                int(np.clip(v - p // 2, lo, hi))
                for v, p, lo, hi in zip(voxel, self.patch, low, high, strict=True)
            ]
        spatial = draw_spatial(rng, self.augment, self.planes)
        intensity = draw_intensity(rng, self.augment)
        return PatchPlan(
            case.name,
            tuple(start),
            forced,
            cls,
            None if voxel is None else tuple(int(v) for v in voxel),
            spatial,
            intensity,
        )

    def _render(
        self, plan: PatchPlan, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        image, label, components = self.data[plan.case].arrays()
        if plan.spatial.matrix is None:
            patches = [
                crop_with_padding(a, plan.start, self.patch) for a in (image, label, components)
            ]
        else:
            centre = np.array(plan.start, dtype=np.float64) + (np.array(self.patch) - 1) / 2.0
            arrays = (image, label, components)
            patches = sample_affine(
                arrays, (True, False, False), centre, self.patch, plan.spatial.matrix
            )
        img, lab, comp = (flip_rotate(p, plan.spatial) for p in patches)
        img = apply_intensity(np.ascontiguousarray(img, dtype=np.float32), plan.intensity, rng)
        return img, np.ascontiguousarray(lab), np.ascontiguousarray(comp)

    def _foreground_voxel(
        self, rng: np.random.Generator, case: CachedCase
    ) -> tuple[int | None, np.ndarray | None]:
        present = case.present_classes()
        if not present:
            return None, None  # empty case: a random patch
        cls = present[int(rng.integers(len(present)))]
        coords, ids = case.locations(cls)
        if self.foreground_sampling == "voxel":
            return cls, coords[int(rng.integers(len(coords)))]
        key = (case.name, cls)
        if key not in self._lesion_index:
            _, starts, counts = np.unique(ids, return_index=True, return_counts=True)
            self._lesion_index[key] = (starts, counts)
        starts, counts = self._lesion_index[key]
        lesion = int(rng.integers(len(starts)))
        return cls, coords[starts[lesion] + int(rng.integers(counts[lesion]))]


@dataclass(frozen=True)
class PatchPlan:
    """Random choices of one patch: ``start`` is the corner in preprocessed voxels (before
    augmentation); ``voxel`` the foreground voxel it was centred on (forced patches)."""

    case: str
    start: tuple[int, int, int]
    forced: bool
    cls: int | None
    voxel: tuple[int, int, int] | None
    spatial: SpatialDraw
    intensity: IntensityDraw


class _BatchDataset:
    """Map-style view for torch's DataLoader: item ``i`` is batch ``i``."""

    def __init__(self, loader: PatchLoader) -> None:
        self.loader = loader

    def __getitem__(self, index: int) -> tuple:
        return self.loader.batch(index)

    def __len__(self) -> int:  # indices come from the sampler; any index is valid
        return 2**62


def _worker_init(_: int) -> None:
    import torch

    torch.set_num_threads(1)  # workers share the few cores with the training process
