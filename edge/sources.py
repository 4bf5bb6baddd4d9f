"""``edge.sources.open_source``, the name the README's embedding example imports; the video sources
are :mod:`edge.stream.sources`."""
from .stream.sources import open_source

__all__ = ["open_source"]
