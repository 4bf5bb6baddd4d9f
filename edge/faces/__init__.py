"""Face detection and cropping (torch-free)."""
from .crop import crop_face, crop_matrix, transform_points
from .detector import Detection, FaceDetector, find_yunet_model

__all__ = ["Detection", "FaceDetector", "crop_face", "crop_matrix", "find_yunet_model",
           "transform_points"]
