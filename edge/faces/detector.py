"""Face detectors: YuNet (OpenCV Zoo, ONNX, via ``cv2.FaceDetectorYN``) and OpenCV's Haar cascade.

YuNet gives a box, five landmarks (eyes, nose tip, mouth corners; image-left first) and a
score. The Haar cascade is the fallback that needs no model file (boxes only, score 1).
A detector instance is **not** thread-safe (OpenCV keeps per-instance buffers): make one
per worker thread/process. Large frames are downscaled to ``max_side`` for detection and
the results scaled back, which bounds detection cost on 1080p/4K frames.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, ModelError, OutOfMemoryError
from ..media import as_bgr, is_alloc_failure

YUNET_ENV = "FFD_YUNET_MODEL"
YUNET_FILENAME = "face_detection_yunet.onnx"
MIN_DETECT_SIDE = 8  # px: below this (after the downscale to max_side) no face can be found


@dataclass(frozen=True)
class Detection:
    """One face: ``box`` is (x, y, w, h) in image pixels, ``landmarks`` (5, 2) or None."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray | None = None

    @property
    def area(self) -> float:
        return float(self.box[2] * self.box[3])

    def to_dict(self) -> dict:
        return {
            "box": [round(float(v), 2) for v in self.box],
            "score": round(float(self.score), 4),
            "landmarks": None if self.landmarks is None else np.round(self.landmarks, 2).tolist(),
        }


def find_yunet_model(path: str | os.PathLike | None = None) -> Path:
    """Resolve the YuNet ONNX file: explicit path, then ``$FFD_YUNET_MODEL``, then ``~/.cache/ffd/``."""
    if path:  # an explicit path is used as given, never silently replaced
        candidates = [path]
    else:
        candidates = [os.environ.get(YUNET_ENV), Path.home() / ".cache" / "ffd" / YUNET_FILENAME]
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    where = path or os.environ.get(YUNET_ENV) or candidates[-1]
    raise ModelError(
        "the YuNet face-detector model was not found",
        path=where,
        fix=f"pass --detector-model PATH/{YUNET_FILENAME} or set {YUNET_ENV} "
            "(`ffd faces extract --detector haar` needs no file)",
    )


# What OpenCV's cv2.FaceDetectorYN reads from the network (YuNet 2023mar, OpenCV >= 4.8): a score,
# objectness, box and 5 landmarks per anchor at strides 8, 16 and 32.
YUNET_OUTPUTS = tuple(f"{k}_{s}" for k in ("cls", "obj", "bbox", "kps") for s in (8, 16, 32))
YUNET_FIX = (f"point --detector-model (or {YUNET_ENV}) at OpenCV Zoo's {YUNET_FILENAME} "
             "(face_detection_yunet_2023mar.onnx), not at a classifier or landmark model")


def check_yunet_model(path: str | os.PathLike) -> None:
    """Refuse an ONNX that is not a YuNet face detector (by its graph's outputs), naming the file.

    Given a forgery classifier or the landmark model, OpenCV creates the detector and fails (or
    returns garbage) at the first frame; this check makes it a ModelError when the detector is opened.
    """
    from ..onnx_model import graph_inputs, load_onnx

    model = load_onnx(path, fix=YUNET_FIX)
    outs = [o.name for o in model.graph.output]
    missing = [n for n in YUNET_OUTPUTS if n not in outs]
    ins = graph_inputs(model)
    shape = [d.dim_value if d.HasField("dim_value") else None for d in ins[0].type.tensor_type.shape.dim] if ins else []
    if missing or len(ins) != 1 or len(shape) != 4 or shape[1] not in (3, None):
        raise ModelError(f"not a YuNet face detector: its outputs are {outs[:6]}{'...' if len(outs) > 6 else ''}, "
                         f"a YuNet model has {', '.join(YUNET_OUTPUTS[:3])}, ... {YUNET_OUTPUTS[-1]} and one "
                         "(1,3,H,W) input", path=path, fix=YUNET_FIX)


class FaceDetector:
    """``detect(image_bgr) -> list[Detection]`` sorted by area, largest first."""

    def __init__(self, kind: str = "yunet", model_path: str | os.PathLike | None = None,
                 score_threshold: float = 0.6, nms_threshold: float = 0.3, max_side: int = 640):
        import cv2

        from ..settings import RANGES, check

        self.kind = kind
        self.score_threshold = check("score_threshold", score_threshold, *RANGES["probability"], allow_none=False)
        nms_threshold = check("nms_threshold", nms_threshold, *RANGES["probability"], allow_none=False)
        self.max_side = check("max_side", max_side, *RANGES["det_max_side"], allow_none=False)
        if kind == "yunet":
            self.model_path = find_yunet_model(model_path)
            check_yunet_model(self.model_path)  # a classifier or landmark model given as the detector: refused now
            try:
                self._net = cv2.FaceDetectorYN.create(str(self.model_path), "", (320, 320),
                                                      self.score_threshold, nms_threshold, 5000)
                self._net.setInputSize((32, 32))  # a probe: OpenCV fails here, not at create, on other graphs
                self._net.detect(np.zeros((32, 32, 3), np.uint8))
                self._size = (32, 32)
            except cv2.error as e:
                raise ModelError(f"OpenCV could not load or run the YuNet model: "
                                 f"{(e.msg if hasattr(e, 'msg') else str(e)).strip().splitlines()[-1][:200]}",
                                 path=self.model_path, fix=YUNET_FIX) from e
        elif kind == "haar":
            self.model_path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
            self._net = cv2.CascadeClassifier(str(self.model_path))
            if self._net.empty():
                raise ModelError("OpenCV's Haar cascade could not be loaded", path=self.model_path,
                                 fix="install opencv-python-headless<5 (5.x no longer ships the cascades)")
        else:
            raise ConfigError(f"unknown detector {kind!r}; choose yunet or haar")

    @classmethod
    def from_spec(cls, spec, model_path=None, **kw) -> "FaceDetector":
        if spec.detector == "none":
            raise ConfigError("this model's spec has detector='none' (inputs are ready crops); no detector to build")
        return cls(spec.detector, model_path=model_path, score_threshold=spec.det_score_threshold, **kw)

    def detect(self, image: np.ndarray) -> list[Detection]:
        import cv2

        image = as_bgr(image)
        h, w = image.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        small = image if scale == 1.0 else cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
                                                     interpolation=cv2.INTER_AREA)
        inv = 1.0 / scale
        if min(small.shape[:2]) < MIN_DETECT_SIDE:  # no face fits; YuNet returns garbage boxes for 1-2 px inputs
            return []
        try:
            dets = self._run(small, inv)
        except cv2.error as e:  # the detector model is a setting of the run: its failure is the run's, not the file's
            if is_alloc_failure(e):
                raise OutOfMemoryError("out of memory running the face detector",
                                       fix="free memory (fewer --workers) and re-run; the file is retried") from e
            msg = (str(e).strip().splitlines() or [""])[-1][:200]
            raise ModelError(f"the face detector failed on a frame: {msg}", path=getattr(self, "model_path", None),
                             fix="point --detector-model (or FFD_YUNET_MODEL) at OpenCV Zoo's YuNet model") from e
        dets = [d for d in dets if _plausible(d, w, h)]
        dets.sort(key=lambda d: d.area, reverse=True)
        return dets

    def _run(self, small: np.ndarray, inv: float) -> list[Detection]:
        """The raw detections of the network on ``small``, in the input image's pixels (``inv``: 1/scale)."""
        import cv2

        dets: list[Detection] = []
        if self.kind == "yunet":
            sh, sw = small.shape[:2]
            if self._size != (sw, sh):
                self._net.setInputSize((sw, sh))
                self._size = (sw, sh)
            _, faces = self._net.detect(small)
            for f in ([] if faces is None else faces):
                box = tuple(float(v) * inv for v in f[:4])
                lm = f[4:14].reshape(5, 2).astype(np.float32) * inv
                dets.append(Detection(box, float(f[14]), lm))
        else:
            grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
            min_side = max(20, int(min(small.shape[:2]) * 0.08))
            for x, y, bw, bh in self._net.detectMultiScale(grey, 1.1, 5, minSize=(min_side, min_side)):
                dets.append(Detection((x * inv, y * inv, bw * inv, bh * inv), 1.0, None))
        return dets


def _plausible(d: Detection, w: int, h: int) -> bool:
    """A finite box of positive size that overlaps the image (drops degenerate detector output)."""
    x, y, bw, bh = d.box
    if not all(np.isfinite(v) for v in d.box) or bw <= 0 or bh <= 0 or not np.isfinite(d.score):
        return False
    if d.landmarks is not None and not np.all(np.isfinite(d.landmarks)):
        return False
    return x < w and y < h and x + bw > 0 and y + bh > 0

