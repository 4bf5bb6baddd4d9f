"""Batch screening of video/image archives into SQLite (``ffd screen``): sampling, aggregation,
resume, CSV/JSON export, HTML report, and Ray scale-out (``ray_runner``, imported lazily)."""
from .db import ResultsDB, content_hash, export
from .report import write_report
from .screen import ScreenSettings, aggregate, discover, screen_archive

__all__ = ["ResultsDB", "ScreenSettings", "aggregate", "content_hash", "discover", "export", "screen_archive",
           "write_report"]
