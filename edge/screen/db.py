"""The screening results database: SQLite, one row per file, committed per file.

Schema (table ``results``; ``meta`` holds ``schema_version``)::

    path TEXT PRIMARY KEY   -- absolute path
    size INTEGER, mtime REAL -- from stat(); a changed file is screened again
    content_hash TEXT       -- sha256 of (size, first MiB, last MiB), hex; fast on any file size
    kind TEXT               -- video | image | other
    status TEXT             -- done | no_face | error
    score REAL, label TEXT  -- aggregated P(fake) and its label (NULL unless done)
    aggregation TEXT        -- mean | max | topk:K
    faces_seen INTEGER      -- faces found over all sampled frames
    n_frames INTEGER        -- frames sampled and decoded
    duration_s REAL         -- video length (0 for images)
    error TEXT, error_type TEXT -- why a file failed (status error)
    model_id TEXT, threshold REAL -- ModelCard.model_id() and the threshold used
    settings TEXT           -- JSON of the sampling/aggregation settings
    fingerprint TEXT        -- the run settings that made the row (model file hash, card, detector, settings)
    evidence TEXT           -- JSON list, one item per sampled frame: {frame, t, score, faces, box}
    thumb BLOB              -- JPEG of the most suspicious face (small), or NULL
    heatmaps TEXT           -- files labelled fake, models with a features output: JSON list of the top frames'
                               heatmap overlays {frame, t, score, jpeg (base64)}, or NULL
    elapsed_s REAL, screened_at TEXT

The database runs in WAL mode with ``synchronous=NORMAL``: every committed row survives the
process being killed (only a power loss can drop the last commits), and readers (reports,
exports) never block the writer. A file is *finished* when its row matches its current size
and mtime and was produced with the same settings *fingerprint* (:func:`edge.screen.screen.run_fingerprint`:
the model file's hash, its card and threshold, the face detector model and the sampling settings);
re-running skips it, except error rows of a transient kind (:data:`TRANSIENT_ERRORS`: a decode timeout,
an allocation failure), which are screened again. A row made with other settings is never reused.

Text is stored in its :func:`edge.inputs.safe_text` form: a file name that is not valid UTF-8 (which
SQLite cannot store as text) keeps its undecodable bytes as ``\\xNN``. A database made before the
``fingerprint`` column existed gains it (``ALTER TABLE``, the rows kept; they are screened again once).
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path
from typing import Iterator

from ..errors import ConfigError, DecodeTimeoutError, FfdError, OutOfMemoryError
from ..inputs import safe_text

SCHEMA_VERSION = 2
# error types retried by the next run (the fault is the run's resources or deadline, not the file's)
TRANSIENT_ERRORS = tuple(c.__name__ for c in (DecodeTimeoutError, OutOfMemoryError, MemoryError))  # FfdError.transient
MIB = 1 << 20

COLUMNS = ("path", "size", "mtime", "content_hash", "kind", "status", "score", "label", "aggregation",
           "faces_seen", "n_frames", "duration_s", "error", "error_type", "model_id", "threshold", "settings",
           "evidence", "thumb", "elapsed_s", "screened_at", "fingerprint", "heatmaps")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    path TEXT PRIMARY KEY,
    size INTEGER, mtime REAL, content_hash TEXT, kind TEXT,
    status TEXT NOT NULL CHECK (status IN ('done', 'no_face', 'error')),
    score REAL, label TEXT, aggregation TEXT, faces_seen INTEGER, n_frames INTEGER, duration_s REAL,
    error TEXT, error_type TEXT, model_id TEXT, threshold REAL, settings TEXT, evidence TEXT, thumb BLOB,
    elapsed_s REAL, screened_at TEXT, fingerprint TEXT, heatmaps TEXT
);
CREATE INDEX IF NOT EXISTS results_score ON results (score DESC);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""


class ResultsWriteError(FfdError):
    """The results database cannot be written (disk full, read-only, removed)."""


def content_hash(path: str | os.PathLike, chunk: int = MIB) -> str:
    """sha256 over the size and the first and last ``chunk`` bytes: cheap, and catches edits and truncation."""
    p = Path(path)
    size = p.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(p, "rb") as f:
        h.update(f.read(chunk))
        if size > chunk:
            f.seek(max(chunk, size - chunk))
            h.update(f.read(chunk))
    return h.hexdigest()


class ResultsDB:
    """``ResultsDB(path)``: open/create; ``put(row)`` commits one file; ``finished(...)`` for resume."""

    def __init__(self, path: str | os.PathLike, readonly: bool = False):
        self.path = Path(path)
        try:
            if readonly:
                if not self.path.is_file():
                    raise ConfigError("results database not found", path=self.path,
                                      fix="run `ffd screen ARCHIVE --db PATH` first")
                self.con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
            else:
                if not self.path.parent.is_dir():
                    raise ConfigError("the folder of the results database does not exist", path=self.path.parent,
                                      fix="create it or pass --db in an existing folder")
                self.con = sqlite3.connect(str(self.path), timeout=30)
                self.con.execute("PRAGMA journal_mode=WAL")
                self.con.execute("PRAGMA synchronous=NORMAL")
                self.con.executescript(_SCHEMA)
                self._migrate()
                self.con.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                self.con.commit()
        except sqlite3.DatabaseError as e:  # OperationalError (read-only, disk full), corrupt file
            raise ConfigError(f"cannot open the results database: {e}", path=self.path,
                              fix="use a writable folder with free space (--db PATH), or remove a corrupt file") from e

    def _migrate(self) -> None:
        """Bring a database of an older ffd to this schema: add missing columns, never drop or rewrite a row."""
        have = {r[1] for r in self.con.execute("PRAGMA table_info(results)")}
        for col, typ in (("fingerprint", "TEXT"), ("heatmaps", "TEXT")):
            if col not in have:
                self.con.execute(f"ALTER TABLE results ADD COLUMN {col} {typ}")
        self.con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    def put(self, row: dict) -> None:
        """Insert or replace the row of ``row['path']`` and commit (one transaction per file).

        Text values are stored in their :func:`~edge.inputs.safe_text` form (a name that is not UTF-8)."""
        vals = [safe_text(v) if isinstance(v, str) else v for v in (row.get(c) for c in COLUMNS)]
        try:
            with self.con:
                self.con.execute(f"INSERT OR REPLACE INTO results ({', '.join(COLUMNS)}) "
                                 f"VALUES ({', '.join('?' * len(COLUMNS))})", vals)
        except sqlite3.OperationalError as e:
            raise ResultsWriteError(f"cannot write the result of a file to the database: {e}", path=self.path,
                                    fix="free disk space or make the folder writable, then re-run the same "
                                        "command: finished files are kept and skipped") from e

    def finished(self, fingerprint: str, retry_errors: bool = False) -> dict[str, tuple]:
        """``{path: (size, mtime)}`` of the rows made with this settings ``fingerprint`` that a re-run keeps:
        every status but transient errors (:data:`TRANSIENT_ERRORS`), and no error at all with ``retry_errors``."""
        q = "SELECT path, size, mtime FROM results WHERE fingerprint = ?"
        if retry_errors:
            q += " AND status != 'error'"
        else:
            q += (" AND NOT (status = 'error' AND COALESCE(error_type, '') IN "
                  f"({', '.join('?' * len(TRANSIENT_ERRORS))}))")
        args = (fingerprint,) if retry_errors else (fingerprint, *TRANSIENT_ERRORS)
        return {p: (s, m) for p, s, m in self.con.execute(q, args)}

    def describe_fingerprint(self, fingerprint: str, what: dict) -> None:
        """Record what a fingerprint stands for (meta ``fingerprint:<fp>``), so a row's settings can be read back."""
        try:
            with self.con:
                self.con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                 (f"fingerprint:{fingerprint}", safe_text(json.dumps(what, sort_keys=True))))
        except sqlite3.OperationalError as e:
            raise ResultsWriteError(f"cannot write to the results database: {e}", path=self.path,
                                    fix="free disk space or make the folder writable") from e

    def rows(self, order: str = "suspicious") -> Iterator[dict]:
        """All rows as dicts; ``suspicious``: done rows by score (highest first), then no_face, then errors."""
        sql = "SELECT * FROM results"
        if order == "suspicious":
            sql += (" ORDER BY CASE status WHEN 'done' THEN 0 WHEN 'no_face' THEN 1 ELSE 2 END,"
                    " score DESC, path")
        else:
            sql += " ORDER BY path"
        cur = self.con.execute(sql)
        names = [d[0] for d in cur.description]
        for r in cur:
            yield dict(zip(names, r))

    def count(self) -> dict[str, int]:
        return dict(self.con.execute("SELECT status, COUNT(*) FROM results GROUP BY status").fetchall())

    def integrity_ok(self) -> bool:
        return self.con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def close(self) -> None:
        self.con.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def export(db_path: str | os.PathLike, out: str | os.PathLike) -> int:
    """Write the rows to ``.csv``, ``.json`` or ``.jsonl`` (without thumbnails and heatmaps); returns the row count."""
    import csv

    from ..outputs import atomic_open, check_outputs

    out = Path(out)
    check_outputs([db_path], {"--export": out})
    cols = [c for c in COLUMNS if c not in ("thumb", "heatmaps")]
    with ResultsDB(db_path, readonly=True) as db:
        rows = [{c: r.get(c) for c in cols} for r in db.rows()]  # a database of an older ffd lacks new columns
    fmt = out.suffix.lower()
    try:
        if fmt == ".csv":
            with atomic_open(out, "w", newline="") as f:  # all or nothing: a full disk keeps the old file
                w = csv.DictWriter(f, fieldnames=cols)
                w.writeheader()
                w.writerows(rows)
        elif fmt in (".json", ".jsonl"):
            for r in rows:
                for k in ("evidence", "settings"):
                    r[k] = json.loads(r[k]) if r[k] else None
            with atomic_open(out, "w") as f:
                if fmt == ".json":
                    json.dump(rows, f, indent=1)
                else:
                    f.writelines(json.dumps(r) + "\n" for r in rows)
        else:
            raise ConfigError(f"unknown export format {fmt!r}", path=out, fix="name the file .csv, .json or .jsonl")
    except OSError as e:
        raise ConfigError(f"cannot write the export: {e.strerror or e}", path=out,
                          fix="use a writable folder with free space") from e
    return len(rows)
