"""ffd-edge runtime: face detection and cropping, the preprocessing spec, runtime backends,
camera/video pipelines, screening and benchmarking. Imports and runs without torch."""
from .errors import FfdError
from .spec import ModelCard, PreprocessSpec, preprocess

import os as _os

# OpenCV reads its decode pixel limit once, when cv2 is loaded: set it to ffd's budget first (edge.media
# checks the size an image header claims itself too; this bounds the formats it does not parse)
_px = _os.environ.get("FFD_MAX_IMAGE_PIXELS", "").strip()
if _px.isdigit() and int(_px) > 0:  # ffd's budget, given: OpenCV's too (an inherited value included)
    _os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"] = _px
else:  # the default budget, unless the user set OpenCV's own
    _os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(1 << 27))
del _px

__version__ = "0.1.0"
__all__ = ["FfdError", "FaceResult", "ForgeryDetector", "ModelCard", "PreprocessSpec", "__version__", "preprocess"]

_LAZY = {"ForgeryDetector": "edge.forgery", "FaceResult": "edge.forgery"}


def __getattr__(name):  # lazy: `import edge` stays light (no OpenCV/ONNX Runtime until used)
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'edge' has no attribute {name!r}")
