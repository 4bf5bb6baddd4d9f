"""Runtime backends behind one ``Runner`` interface; heavy imports happen inside each backend.

:mod:`.base`: the interface (no backend, no policy). :mod:`.ort`, :mod:`.trt`: the backends.
:mod:`.select`: which backend runs a model, and with which options (``open_runner``).
"""
from .base import Runner
from .select import (BACKEND_OPTIONS, BACKENDS, Default, auto_backend, model_card, open_runner, route_options,
                     trt_unusable_reason)

__all__ = ["BACKEND_OPTIONS", "BACKENDS", "Default", "Runner", "auto_backend", "model_card", "open_runner",
           "route_options", "trt_unusable_reason"]
