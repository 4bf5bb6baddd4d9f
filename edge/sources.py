"""``edge.sources.open_source``, the name the README's embedding example imports, and ``parse_uri``, the one
classifier of source URIs (``open_source`` and ``ffd detect`` both ask it); the video sources are
:mod:`edge.stream.sources`."""
from .stream.sources import ParsedUri, open_source, parse_uri

__all__ = ["ParsedUri", "open_source", "parse_uri"]
