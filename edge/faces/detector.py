"""Face detectors: YuNet (OpenCV Zoo, ONNX) and OpenCV's Haar cascade.

YuNet gives a box, five landmarks (eyes, nose tip, mouth corners; image-left first) and a
score. The Haar cascade is the fallback that needs no model file (boxes only, score 1).
YuNet runs on ONNX Runtime by default (``engine="auto"``; :class:`YuNetOrt`: the network on one
ONNX Runtime thread, then ``cv2.FaceDetectorYN``'s own decoding and NMS), 2-3x faster per frame
than OpenCV's DNN module on the same CPU; ``engine="opencv"`` runs ``cv2.FaceDetectorYN`` itself.
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


YUNET_STRIDES = (8, 16, 32)
YUNET_ENGINES = ("auto", "onnxruntime", "opencv")
YUNET_ENGINE_ENV = "FFD_YUNET_ENGINE"


class YuNetOrt:
    """YuNet on ONNX Runtime, with the post-processing of OpenCV's ``FaceDetectorYN`` (OpenCV >= 4.8).

    What ``cv2.FaceDetectorYN.detect`` does, step by step: the BGR image, as float 0..255 without
    mean or scale, zero-padded right and bottom to a multiple of 32; per stride s in (8, 16, 32) and
    anchor (row r, column c), score = sqrt(clip(cls) * clip(obj)); box centre ((c, r) + bbox[:2]) * s,
    size exp(bbox[2:]) * s; landmarks (kps + (c, r)) * s; then NMS on the integer boxes
    (``cv2.dnn.NMSBoxes``). ``detect`` returns the same (N, 15) float32 rows (x, y, w, h, 5 x (x, y),
    score), best first, or None. One session and one reused input buffer per instance (not thread-safe,
    like :class:`FaceDetector`); ``threads`` intra-op threads (1: a detector per worker, as the rest of the
    package runs it; 2 was slower in-process, docs/faces.md).
    """

    def __init__(self, model_path: str | os.PathLike, score_threshold: float, nms_threshold: float,
                 top_k: int = 5000, threads: int = 1):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = int(threads), 1
        so.log_severity_level = 3
        self._sess = ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])
        self._input = self._sess.get_inputs()[0].name
        self.score_threshold, self.nms_threshold, self.top_k = float(score_threshold), float(nms_threshold), top_k
        self._blob, self._blob_hw = None, None

    def detect(self, image: np.ndarray) -> np.ndarray | None:
        import cv2

        h, w = image.shape[:2]
        ph, pw = -(-h // 32) * 32, -(-w // 32) * 32
        if self._blob is None or self._blob_hw != (h, w):  # one buffer per frame size: its padding stays zero
            self._blob, self._blob_hw = np.zeros((1, 3, ph, pw), np.float32), (h, w)
        blob = self._blob
        blob[0, :, :h, :w] = image.transpose(2, 0, 1)
        out = dict(zip(YUNET_OUTPUTS, self._sess.run(list(YUNET_OUTPUTS), {self._input: blob})))
        rows = []
        for s in YUNET_STRIDES:
            cols = pw // s
            score = np.sqrt(np.clip(out[f"cls_{s}"].reshape(-1), 0, 1) * np.clip(out[f"obj_{s}"].reshape(-1), 0, 1))
            keep = np.flatnonzero(score >= self.score_threshold)
            if not keep.size:
                continue
            c, r = (keep % cols).astype(np.float32)[:, None], (keep // cols).astype(np.float32)[:, None]
            bb, kp = out[f"bbox_{s}"].reshape(-1, 4)[keep], out[f"kps_{s}"].reshape(-1, 10)[keep]
            wh = np.exp(bb[:, 2:4]) * s
            xy = (np.hstack([c, r]) + bb[:, :2]) * s - wh / 2
            lm = np.empty_like(kp)
            lm[:, 0::2], lm[:, 1::2] = (kp[:, 0::2] + c) * s, (kp[:, 1::2] + r) * s
            rows.append(np.hstack([xy, wh, lm, score[keep, None]]).astype(np.float32))
        if not rows:
            return None
        faces = np.concatenate(rows)
        boxes = [[int(v) for v in b] for b in faces[:, :4]]  # OpenCV's NMS runs on Rect2i
        keep = cv2.dnn.NMSBoxes(boxes, faces[:, 14].tolist(), self.score_threshold, self.nms_threshold,
                                top_k=self.top_k)
        keep = np.asarray(keep, np.int64).reshape(-1)
        return faces[keep] if keep.size else None


class FaceDetector:
    """``detect(image_bgr) -> list[Detection]`` sorted by area, largest first."""

    def __init__(self, kind: str = "yunet", model_path: str | os.PathLike | None = None,
                 score_threshold: float = 0.6, nms_threshold: float = 0.3, max_side: int = 640,
                 engine: str = "auto"):
        import cv2

        from ..settings import RANGES, check

        if engine not in YUNET_ENGINES:
            raise ConfigError(f"unknown YuNet engine {engine!r}; choose one of {', '.join(YUNET_ENGINES)}")
        self.kind = kind
        self.engine = None
        self.score_threshold = check("score_threshold", score_threshold, *RANGES["probability"], allow_none=False)
        nms_threshold = check("nms_threshold", nms_threshold, *RANGES["probability"], allow_none=False)
        self.max_side = check("max_side", max_side, *RANGES["det_max_side"], allow_none=False)
        if kind == "yunet":
            self.model_path = find_yunet_model(model_path)
            check_yunet_model(self.model_path)  # a classifier or landmark model given as the detector: refused now
            self.engine = yunet_engine(engine)[0]
            try:
                if self.engine == "onnxruntime":
                    self._net = YuNetOrt(self.model_path, self.score_threshold, nms_threshold)
                else:
                    self._net = cv2.FaceDetectorYN.create(str(self.model_path), "", (320, 320),
                                                          self.score_threshold, nms_threshold, 5000)
                    self._net.setInputSize((32, 32))  # a probe: OpenCV fails here, not at create, on other graphs
                    self._size = (32, 32)
                self._net.detect(np.zeros((32, 32, 3), np.uint8))
            except Exception as e:
                if not _is_engine_error(e):
                    raise
                who = "ONNX Runtime" if self.engine == "onnxruntime" else "OpenCV"
                raise ModelError(f"{who} could not load or run the YuNet model: "
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
        except Exception as e:  # the detector model is a setting of the run: its failure is the run's, not the file's
            if not (_is_engine_error(e) or isinstance(e, MemoryError)):
                raise
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
            if self.engine == "onnxruntime":
                faces = self._net.detect(small)
            else:
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


def yunet_engine(engine: str = "auto") -> tuple[str, str]:
    """The engine YuNet runs on and why: ``engine`` itself unless ``auto``; then ``$FFD_YUNET_ENGINE``
    (``onnxruntime`` or ``opencv``) when set, else ONNX Runtime where it imports, else OpenCV's DNN."""
    if engine != "auto":
        return engine, "asked for"
    env = os.environ.get(YUNET_ENGINE_ENV, "").strip().lower()
    if env and env != "auto":
        if env not in YUNET_ENGINES:
            raise ConfigError(f"{YUNET_ENGINE_ENV}={env!r} is not a YuNet engine",
                              fix=f"set {YUNET_ENGINE_ENV} to onnxruntime or opencv, or unset it")
        return env, f"chosen by {YUNET_ENGINE_ENV}"
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "opencv", "auto: onnxruntime does not import"
    return "onnxruntime", "auto: 2-3x faster per frame than OpenCV's DNN module here"


def _is_engine_error(e: BaseException) -> bool:
    """An error raised by OpenCV or ONNX Runtime (their exception types are not importable alike)."""
    import cv2

    return isinstance(e, cv2.error) or type(e).__module__.split(".")[0] == "onnxruntime"
