"""Runtime backends behind one ``Runner`` interface; heavy imports happen inside each backend."""
from .base import BACKENDS, Runner, open_runner

__all__ = ["BACKENDS", "Runner", "open_runner"]
