"""ffd-edge runtime: face detection and cropping, the preprocessing spec, runtime backends,
camera/video pipelines, screening and benchmarking. Imports and runs without torch."""
from .errors import FfdError
from .spec import ModelCard, PreprocessSpec, preprocess

__version__ = "0.1.0"
__all__ = ["FfdError", "FaceResult", "ForgeryDetector", "ModelCard", "PreprocessSpec", "__version__", "preprocess"]

_LAZY = {"ForgeryDetector": "edge.forgery", "FaceResult": "edge.forgery"}


def __getattr__(name):  # lazy: `import edge` stays light (no OpenCV/ONNX Runtime until used)
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'edge' has no attribute {name!r}")
