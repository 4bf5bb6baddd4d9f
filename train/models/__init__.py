"""Model entry points; imported lazily by ``train.registry``. Each module registers its models."""
from . import student, teacher  # noqa: F401
from . import efficientnet_lite, mobilenetv2, vit  # noqa: F401
