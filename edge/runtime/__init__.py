"""Runtime backends behind one ``Runner`` interface; heavy imports happen inside each backend."""
from .base import BACKEND_OPTIONS, BACKENDS, Default, Runner, open_runner, route_options

__all__ = ["BACKEND_OPTIONS", "BACKENDS", "Default", "Runner", "open_runner", "route_options"]
