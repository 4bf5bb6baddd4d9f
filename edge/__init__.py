"""ffd-edge runtime: face detection and cropping, the preprocessing spec, runtime backends,
camera/video pipelines, screening and benchmarking. Imports and runs without torch."""
from .errors import FfdError
from .spec import ModelCard, PreprocessSpec, preprocess

__version__ = "0.1.0"
__all__ = ["FfdError", "ModelCard", "PreprocessSpec", "__version__", "preprocess"]
