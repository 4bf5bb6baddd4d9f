"""The torch face dataset: crops -> ``edge.spec.preprocess`` tensors, optionally doubled with SBI fakes.

``FaceDataset(samples, spec, sbi=SBIConfig())`` yields ``(float32 CHW tensor, label)``. Items
``i < N`` are the samples themselves; with ``sbi`` every *real* sample j also yields a
self-blended pseudo-fake (Shiohara & Yamasaki, CVPR 2022; :mod:`train.sbi`) at index
``N + j``, label 1, method ``"sbi"``. Crops are read with ``cv2.imread``, resized to the spec's
size with :func:`edge.spec.resize_crop` (landmarks follow), blended at that size (cheap on 2
cores), lightly augmented when ``augment`` and normalised with :func:`edge.spec.preprocess`, the
one path shared with calibration and the runtime. Randomness is drawn from
``np.random.default_rng([seed, epoch, index])`` so a run reproduces exactly; call
``set_epoch(e)`` each epoch to get new blends. With ``SBIConfig.cross_p > 0`` a share of the
pseudo-fakes are cross-identity blends: the source is another person's real crop aligned on the
landmarks (:meth:`FaceDataset._donor`, :func:`train.sbi.align_donor`).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from edge.errors import DatasetError, InputError
from edge.spec import PreprocessSpec, preprocess, resize_crop

from ..sbi import SBIConfig, self_blend
from .augment import ArchiveAugment
from .samples import FAKE, REAL, Sample


def _scaled(points, sx: float, sy: float):
    if points is None:
        return None
    return np.asarray(points, np.float64) * (sx, sy)


def read_crop(path: str) -> np.ndarray:
    """uint8 BGR image (decoded as extraction, calibration and the runtime decode) or InputError naming the file."""
    from edge.media import read_image

    try:
        return read_image(path)
    except InputError as e:
        raise InputError(e.message, path=path, fix="re-extract the faces or remove the file from the dataset") from e


def augment_crop(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Light augmentation for both classes alike: h-flip, mild JPEG re-encoding, brightness."""
    import cv2

    if rng.random() < 0.5:
        img = img[:, ::-1]
    if rng.random() < 0.3:
        q = int(rng.integers(60, 96))
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img), [cv2.IMWRITE_JPEG_QUALITY, q])
        if ok:
            img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if rng.random() < 0.3:
        img = np.clip(img.astype(np.int16) + int(rng.integers(-20, 21)), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img)


class FaceDataset(Dataset):
    """Face crops as model inputs; see the module docstring for indexing and seeding."""

    def __init__(self, samples: Sequence[Sample], spec: PreprocessSpec, sbi: SBIConfig | None = None,
                 seed: int = 0, augment: "bool | ArchiveAugment" = False, cache: bool = False):
        self.samples = list(samples)
        if not self.samples:
            raise DatasetError("FaceDataset got no samples", fix="check the dataset path and split fractions")
        bad = [s for s in self.samples if s.label not in (REAL, FAKE)]
        if bad:
            raise DatasetError(f"{len(bad)} samples have no real/fake label", path=bad[0].path,
                               fix="load_samples(path, label='real') for a folder of real faces")
        videos = [s for s in self.samples if s.is_video]
        if videos:
            raise DatasetError(f"{len(videos)} samples are videos; extract their faces first", path=videos[0].path,
                               fix="ffd faces extract SRC OUT, then load OUT")
        self.spec, self.sbi, self.seed = spec, sbi, int(seed)
        self.augment = augment if isinstance(augment, ArchiveAugment) else bool(augment)
        self.epoch = 0
        # decoded crops at the spec's size (uint8), kept when cache=True: an epoch then costs no PNG
        # decoding (a 6,000-face pool at 128 px is ~300 MB)
        self._cache: dict[int, tuple[np.ndarray, float, float]] | None = {} if cache else None
        self._reals = [i for i, s in enumerate(self.samples) if s.label == REAL] if sbi is not None else []

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.samples) + len(self._reals)

    def sample(self, index: int) -> Sample:
        """The sample behind item ``index`` (pseudo-fakes: the real source with label 1, method sbi)."""
        n = len(self.samples)
        if index < n:
            return self.samples[index]
        return replace(self.samples[self._reals[index - n]], label=FAKE, method="sbi")

    @property
    def labels(self) -> list[int]:
        return [s.label for s in self.samples] + [FAKE] * len(self._reals)

    def load(self, index: int) -> tuple[np.ndarray, int]:
        """Item ``index`` as a uint8 BGR crop at the spec's size (before normalisation) and its label."""
        if not 0 <= index < len(self):
            raise IndexError(index)
        n = len(self.samples)
        j = index if index < n else self._reals[index - n]
        s = self.samples[j]
        img, sx, sy = self._crop(j)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        label = s.label
        if index >= n:
            donor = self._donor(j, img, sx, sy, rng) if self.sbi.cross_p > 0 and rng.random() < self.sbi.cross_p \
                else None
            img, _ = self_blend(img, _scaled(s.landmarks, sx, sy), _scaled(s.dense_landmarks, sx, sy),
                                rng=rng, cfg=self.sbi, donor=donor)
            label = FAKE
        if isinstance(self.augment, ArchiveAugment):
            img = self.augment(img, rng)
        elif self.augment:
            img = augment_crop(img, rng)
        return img, label

    def _donor(self, j: int, img: np.ndarray, sx: float, sy: float, rng: np.random.Generator,
               tries: int = 8) -> np.ndarray | None:
        """A cross-identity source for real sample ``j``: another person's real crop (a different
        ``group``) aligned on ``j``'s landmarks (dense when both have the same layout, else the 5
        detector points); None when ``tries`` draws find none (the blend is then a self-blend)."""
        from ..sbi import align_donor

        s = self.samples[j]
        for _ in range(tries):
            k = self._reals[int(rng.integers(len(self._reals)))]
            d = self.samples[k]
            if k == j or d.group == s.group:
                continue
            pts = [(a, b) for a, b in ((d.dense_landmarks, s.dense_landmarks), (d.landmarks, s.landmarks))
                   if a is not None and b is not None and len(a) == len(b)]
            if not pts:
                continue
            dimg, dx, dy = self._crop(k)
            out = align_donor(dimg, _scaled(pts[0][0], dx, dy), _scaled(pts[0][1], sx, sy), img.shape[:2])
            if out is not None:
                return out
        return None

    def _crop(self, j: int) -> tuple[np.ndarray, float, float]:
        """Sample ``j``'s crop resized to the spec (and the x/y scale from the file's pixels)."""
        if self._cache is not None and j in self._cache:
            return self._cache[j]
        raw = read_crop(self.samples[j].path)
        img = resize_crop(raw, self.spec)
        out = (img, img.shape[1] / raw.shape[1], img.shape[0] / raw.shape[0])
        if self._cache is not None:
            img.setflags(write=False)  # shared between epochs: blends and augmentations copy
            self._cache[j] = out
        return out

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        img, label = self.load(index)
        return torch.from_numpy(preprocess([img], self.spec)[0]), label

