"""The stream package: video sources, the concurrent pipeline, tracking and sinks (torch-free).

:mod:`.sources` (``open_source(uri)``: files, folders, V4L2 and CSI cameras, network streams,
GStreamer pipelines), :mod:`.pipeline` (:class:`Pipeline`: decode -> detect -> classify -> output
on bounded queues, with :class:`DetectStats`), :mod:`.tracking` (IoU tracks, score smoothing) and
:mod:`.sinks` (overlay, annotated video, window). OpenCV is imported when a source opens.
"""
from .pipeline import DetectStats, Pipeline
from .sources import EndOfStream, Frame, Source, SourceError, SourceTimeout, open_source
from .tracking import IouTracker

__all__ = ["DetectStats", "EndOfStream", "Frame", "IouTracker", "Pipeline", "Source", "SourceError", "SourceTimeout",
           "open_source"]
