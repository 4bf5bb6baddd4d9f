"""The embeddable forgery detector: frame in, one score and label per face out.

:class:`ForgeryDetector` is built only from the pieces every stage shares: the model's
card (read by the runner from the ONNX metadata or engine sidecar), the face detector the
card's spec names (:meth:`FaceDetector.from_spec`), :func:`crop_face` and
:func:`~edge.spec.preprocess`, and a runner from :func:`~edge.runtime.open_runner`. So a
deployed model crops and normalises faces exactly as it was trained. Its stage methods
(:meth:`~ForgeryDetector.detect_and_crop`, :meth:`~ForgeryDetector.prepare`,
:meth:`~ForgeryDetector.submit`, :meth:`~ForgeryDetector.face_results`) are what
:meth:`~ForgeryDetector.process_batch` and the concurrent :class:`edge.stream.Pipeline` are made of.

Thread-safety: an instance owns its runner and its OpenCV face detector, neither of which is
safe to share between threads. Use one ``ForgeryDetector`` per thread (or process); close it
with :meth:`close` or a ``with`` block. ``ffd detect`` itself (images, folders, videos, cameras) is
:mod:`edge.detect`.

Heatmaps (``heatmaps=True``, or per call): for every face at or above the card's threshold the result
carries an exact class-activation map (:mod:`edge.heatmap`) at crop size in ``FaceResult.heatmap`` and the
crop in ``FaceResult.crop``. It costs the copy of the model's ``features`` output and one small
``einsum`` per flagged face. A model exported without that output warns once
(:class:`HeatmapUnavailableWarning`) and runs without heatmaps, its scores unchanged.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .errors import FfdError
from .faces import Detection, FaceDetector, crop_face
from .media import as_bgr
from .runtime.base import Done
from .spec import ModelCard, preprocess

DEFAULT_DET_MAX_SIDE = 640  # px: the longer side frames are downscaled to for face detection


class HeatmapUnavailableWarning(UserWarning):
    """Heatmaps were asked of a model exported without the ``features`` output (the run goes on without them)."""


@dataclass
class FaceResult:
    """One face in a frame: ``box`` (x, y, w, h) in frame pixels, ``score`` = P(fake), ``label`` per the card."""

    box: tuple[float, float, float, float]
    landmarks: np.ndarray | None
    det_score: float
    score: float
    label: str
    track_id: int | None = None  # set by trackers built on top (edge pipelines); None here
    extra: dict = field(default_factory=dict)
    # heatmaps on request, for faces at or above the threshold: float32 (S, S) in [0, 1] over the crop, the crop
    heatmap: np.ndarray | None = field(default=None, compare=False, repr=False)
    crop: np.ndarray | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict:
        """The rounded record fields of every ``ffd detect`` line (box, det_score, score, label; ``track_id``
        and ``raw_score`` when a pipeline set them): the one place records are rounded."""
        d = {"box": [round(float(v), 1) for v in self.box], "det_score": round(float(self.det_score), 4),
             "score": round(float(self.score), 5), "label": self.label}
        if self.track_id is not None:
            d["track_id"] = self.track_id
        if "raw_score" in self.extra:
            d["raw_score"] = round(float(self.extra["raw_score"]), 5)
        return d


class ForgeryDetector:
    """``ForgeryDetector(model_path, backend="auto")``; ``process(frame_bgr) -> list[FaceResult]``.

    ``max_faces`` keeps the largest faces of a frame; ``min_face`` drops boxes whose larger
    side is below that many pixels. ``det_max_side``: frames are downscaled to this longer side for
    face detection (cost ~ pixels; boxes come back in frame pixels). ``runner_kw`` goes to
    :func:`~edge.runtime.open_runner`, which routes it (:func:`~edge.runtime.route_options`: e.g.
    ``intra_op_threads`` for ONNX Runtime, ``cuda_graph`` for TensorRT; wrap a value in
    :class:`~edge.runtime.Default` when it is a layer's choice, not the user's). ``card``: the card of an
    ONNX without one (ONNX Runtime). Faces are classified in batches of ``batch_size``. ``heatmaps``: the default
    of :meth:`process_batch` (a heatmap per face at or above the threshold; see the module docstring).
    """

    def __init__(self, model_path: str | os.PathLike, backend: str = "auto",
                 detector_model: str | os.PathLike | None = None, batch_size: int = 32,
                 max_faces: int | None = None, min_face: float = 0.0, card: ModelCard | None = None,
                 det_max_side: int = DEFAULT_DET_MAX_SIDE, heatmaps: bool = False, **runner_kw):
        from .runtime import Default, open_runner

        from .settings import check

        batch_size = check("batch_size", batch_size, allow_none=False)  # edge.settings.RANGES, before any model opens
        max_faces = check("max_faces", max_faces)
        det_max_side = check("det_max_side", det_max_side, allow_none=False)
        if backend == "auto":  # ONNX Runtime's GPU providers when auto ends on ONNX Runtime; dropped for TensorRT
            runner_kw.setdefault("providers", Default("auto"))
        if card is not None:
            runner_kw["card"] = card
        self.runner = open_runner(model_path, backend, **runner_kw)  # routes runner_kw to the backend that runs
        self.card: ModelCard = self.runner.card
        self.spec = self.card.spec
        self.batch_size = batch_size
        self.max_faces = max_faces
        self.min_face = min_face
        self._detector_model = detector_model
        self.det_max_side = int(det_max_side)
        self._detector: FaceDetector | None = None  # built on first use: classify_crops needs none
        from .heatmap import cam_head

        self._cam_head = cam_head(self.card) if self.runner.has_features else None
        self._heatmap_warned = False
        self.heatmaps = bool(heatmaps) and self._heatmaps_on()  # a model without the output says so now, once
        from .faces.detector import YUNET_ENV, check_yunet_model, find_yunet_model

        if self.spec.detector == "yunet" and (detector_model or os.environ.get(YUNET_ENV)):
            try:
                check_yunet_model(find_yunet_model(detector_model))  # a given model that is not a face detector: now
            except FfdError:
                self.runner.close()
                raise

    @property
    def det_max_side(self) -> int:
        """The longer side (px) frames are downscaled to for face detection; may change between frames."""
        return self._det_max_side

    @det_max_side.setter
    def det_max_side(self, side: int) -> None:
        self._det_max_side = int(side)
        if getattr(self, "_detector", None) is not None:
            self._detector.max_side = self._det_max_side

    @property
    def detector(self) -> FaceDetector:
        if self._detector is None:
            self._detector = FaceDetector.from_spec(self.spec, self._detector_model, max_side=self.det_max_side)
        return self._detector

    # --- stages: what process_batch and edge.stream.Pipeline are made of ---------------------
    def detect_faces(self, frame_bgr: np.ndarray) -> list[Detection]:
        """The faces of one frame, largest first (``max_faces``, ``min_face`` applied)."""
        dets = [d for d in self.detector.detect(frame_bgr) if max(d.box[2], d.box[3]) >= self.min_face]
        return dets[: self.max_faces] if self.max_faces else dets

    def crop_faces(self, frame_bgr: np.ndarray, dets: Sequence[Detection]) -> list[np.ndarray]:
        """The uint8 BGR crops of ``dets`` per the model's spec (:func:`~edge.faces.crop_face`)."""
        return [crop_face(frame_bgr, d, self.spec)[0] for d in dets]

    def detect_and_crop(self, frame_bgr: np.ndarray) -> tuple[list[Detection], list[np.ndarray]]:
        """Stage 1 of a frame: its faces and their crops (any decoded image: grey, BGRA, 16-bit)."""
        frame = as_bgr(frame_bgr)
        dets = self.detect_faces(frame)
        return dets, self.crop_faces(frame, dets)

    def prepare(self, crops_bgr: Sequence[np.ndarray]) -> np.ndarray:
        """Stage 2: crops (any size) -> the model's float32 NCHW batch (:func:`~edge.spec.preprocess`)."""
        if len(crops_bgr) == 0:
            s = self.spec.size
            return np.zeros((0, 3, s, s), np.float32)
        return preprocess(crops_bgr, self.spec)

    def submit(self, batch: np.ndarray):
        """Stage 3: start the inference of a prepared batch; ``.result()`` gives its (N,) P(fake).

        On TensorRT it returns at once (the caller prepares the next batch meanwhile); ONNX Runtime runs now.
        """
        if len(batch) == 0:
            return Done(np.zeros((0,), np.float32))
        return self.runner.infer_async(batch)

    def face_results(self, dets: Sequence[Detection], scores: Sequence[float],
                     tracks: Sequence[tuple[int, float]] | None = None) -> list[FaceResult]:
        """Stage 4: one frame's :class:`FaceResult` list from its detections and their scores.

        ``tracks`` (a tracker's ``(track_id, smoothed score)`` per detection): the result carries the
        track and the smoothed score (labelled by the card), the model's own in ``extra["raw_score"]``.
        """
        if tracks is None:
            return [FaceResult(d.box, d.landmarks, d.score, float(s), self.card.label(float(s)))
                    for d, s in zip(dets, scores)]
        return [FaceResult(d.box, d.landmarks, d.score, float(sm), self.card.label(float(sm)), track_id=tid,
                           extra={"raw_score": float(raw)})
                for d, raw, (tid, sm) in zip(dets, scores, tracks)]

    def classify_crops(self, crops_bgr: Sequence[np.ndarray]) -> np.ndarray:
        """uint8 BGR face crops (any size; resized per the spec) -> float32 (N,) P(fake).

        Chunks of ``batch_size`` are double-buffered: chunk i+1 is preprocessed while chunk i runs
        (on TensorRT; ``infer_async`` of ONNX Runtime runs at once).
        """
        if len(crops_bgr) == 0:
            return np.zeros((0,), np.float32)
        scores, pending = [], None
        for i in range(0, len(crops_bgr), self.batch_size):
            job = self.submit(self.prepare(crops_bgr[i:i + self.batch_size]))
            if pending is not None:
                scores.append(pending.result())
            pending = job
        scores.append(pending.result())
        return np.concatenate(scores)

    # --- heatmaps ---------------------------------------------------------------------------
    @property
    def heatmaps_available(self) -> bool:
        """Whether the model has the ``features`` output and the card its CAM head (no warning)."""
        return self._cam_head is not None

    def _heatmaps_on(self) -> bool:
        """Heatmaps were asked for: True when the model can give them, else one warning per detector."""
        if self._cam_head is not None:
            return True
        if not self._heatmap_warned:
            self._heatmap_warned = True
            msg = (f"{getattr(self.runner, 'path', 'the model')}: exported without the heatmap output "
                   "('features'), so no heatmaps; scores are unaffected. Fix: re-export with `ffd export CKPT "
                   "--heatmap` (a global-average-pool + linear head), then quantize again")
            warnings.warn(msg, HeatmapUnavailableWarning, stacklevel=3)  # `ffd` shows it as one line
        return False

    def classify_crops_with_heatmaps(self, crops_bgr: Sequence[np.ndarray],
                                     only_flagged: bool = True) -> tuple[np.ndarray, list[np.ndarray | None]]:
        """``(scores (N,), heatmaps)``: :meth:`classify_crops` plus, per crop, its heatmap (float32 at crop size,
        in [0, 1]) when its score is at or above the card's threshold (every crop with ``only_flagged=False``),
        else ``None``. A model without the features output: one warning, scores as :meth:`classify_crops`, no maps."""
        from .heatmap import heatmap

        if not self._heatmaps_on():
            scores = self.classify_crops(crops_bgr)
            return scores, [None] * len(scores)
        scores, maps = [], []
        for i in range(0, len(crops_bgr), self.batch_size):
            chunk = crops_bgr[i:i + self.batch_size]
            sc, feats = self.runner.infer_with_features(self.prepare(chunk))
            scores.append(sc)
            for c, s_, f in zip(chunk, sc, feats):
                want = not only_flagged or float(s_) >= self.card.threshold
                maps.append(heatmap(f, self._cam_head, c.shape[:2]) if want else None)
        return (np.concatenate(scores) if scores else np.zeros((0,), np.float32)), maps

    def cams(self, crops_bgr: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """``(scores, raw CAMs (N, h, w))`` of crops (``None`` without the features output): the exact maps
        (:func:`edge.heatmap.cam`, ``mean + card bias == logit``), for analysis and checks."""
        from .heatmap import cam

        if self._cam_head is None:
            return self.classify_crops(crops_bgr), None
        sc, feats = self.runner.infer_with_features(self.prepare(crops_bgr))
        return sc, cam(feats, self._cam_head)

    # --- frames ----------------------------------------------------------------------------
    def process(self, frame_bgr: np.ndarray, heatmaps: bool | None = None) -> list[FaceResult]:
        return self.process_batch([frame_bgr], heatmaps=heatmaps)[0]

    def process_batch(self, frames_bgr: Sequence[np.ndarray], heatmaps: bool | None = None) -> list[list[FaceResult]]:
        """Detect in every frame, classify all their faces together (batched), one list per frame.

        ``heatmaps`` (default: the detector's ``heatmaps``): faces at or above the threshold get
        ``FaceResult.heatmap`` and ``FaceResult.crop``."""
        per_frame, crops = [], []
        for frame in frames_bgr:
            dets, frame_crops = self.detect_and_crop(frame)
            per_frame.append(dets)
            crops.extend(frame_crops)
        want = self.heatmaps if heatmaps is None else bool(heatmaps)
        if want:
            scores, maps = self.classify_crops_with_heatmaps(crops)
        else:
            scores, maps = self.classify_crops(crops), None
        out, k = [], 0
        for dets in per_frame:
            res = self.face_results(dets, scores[k:k + len(dets)])
            if maps is not None:
                for j, r in enumerate(res):
                    if maps[k + j] is not None:
                        r.heatmap, r.crop = maps[k + j], crops[k + j]
            out.append(res)
            k += len(dets)
        return out

    def close(self) -> None:
        if self.runner is not None:
            self.runner.close()
            self.runner = None
        self._detector = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
