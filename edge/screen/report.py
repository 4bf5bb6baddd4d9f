"""A single-file HTML report of a screening database: most suspicious files first.

Each row shows the rank, a thumbnail of the most suspicious face (inline base64 JPEG), the
path, score and label, faces and frames, a timeline of the per-frame scores as an
inline SVG with the model's threshold as a dashed line, and for files labelled fake the
heatmaps of their top frames over the face crop (where the model saw the forgery; the row's
``heatmaps``, from a model exported with its features output: :mod:`edge.heatmap`). Files without faces and files that
failed follow, with their errors. Every string that comes from the archive or the database
(paths, errors, labels, model ids, counts, scores) is HTML-escaped or checked as a finite
number, so a file named ``<script>…`` or a database row holding one is text. No JavaScript, no
external resources, and a Content-Security-Policy meta tag forbids both (only the page's own
stylesheet, by hash, and ``data:`` thumbnails load).
"""
from __future__ import annotations

import base64
import json
import os
import time
from html import escape
from pathlib import Path

from ..errors import ConfigError

_CSS = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;
vertical-align:middle}th{background:#f4f4f4}.fake{color:#b00;font-weight:bold}.real{color:#070}
.uncertain{color:#a60}.err{color:#777}.path{font-family:monospace;word-break:break-all;max-width:40em}
img{width:64px;height:64px;image-rendering:auto;border-radius:4px}
img.heat{width:96px;height:96px;margin-right:4px}figure{display:inline-block;margin:0 4px 0 0;text-align:center}
figcaption{font-size:11px;color:#555}"""


def _csp() -> str:
    """The page's Content-Security-Policy: nothing may load or run but its own stylesheet (by hash) and
    the data: thumbnails -- no script at all, inline or not, no frames, forms or external fetches."""
    import hashlib

    style = base64.b64encode(hashlib.sha256(_CSS.encode()).digest()).decode()
    return (f"default-src 'none'; img-src data:; style-src 'sha256-{style}'; script-src 'none'; "
            "object-src 'none'; base-uri 'none'; form-action 'none'")


def _num(v) -> float | None:
    """A finite real number from a database field, else None (a hostile row may hold text anywhere)."""
    import math
    import numbers

    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _text(v) -> str:
    """Any database field as escaped HTML text (``None`` -> empty)."""
    return "" if v is None else escape(str(v), quote=True)


def _count(v) -> str:
    """A count (faces, frames) as escaped text; missing is 0."""
    return "0" if v is None or v == "" else _text(v)


def _evidence(raw) -> list[dict]:
    """The per-frame evidence JSON of a row, or [] when it is missing or not a list of objects."""
    if not raw:
        return []
    try:
        ev = json.loads(raw)
    except (TypeError, ValueError, RecursionError):
        return []
    return [e for e in ev if isinstance(e, dict)] if isinstance(ev, list) else []


def timeline_svg(evidence: list[dict], threshold: float | None, w: int = 240, h: int = 48) -> str:
    """Per-frame scores over time as a polyline (no-face frames are gaps), threshold dashed.

    Only finite numbers reach the SVG (times >= 0, scores clipped to [0, 1]); anything else is a gap."""
    threshold = _num(threshold)
    threshold = None if threshold is None else min(1.0, max(0.0, threshold))
    pts = []
    for e in evidence:
        t, sc = _num(e.get("t")), _num(e.get("score"))
        pts.append((max(0.0, t or 0.0), None if sc is None else min(1.0, max(0.0, sc))))
    if not pts:
        return ""
    t_max = max(t for t, _ in pts) or 1.0
    X = lambda t: 2 + (w - 4) * (t / t_max if len(pts) > 1 else 0.5)  # noqa: E731
    Y = lambda s: 2 + (h - 4) * (1.0 - s)  # noqa: E731
    segs, cur = [], []
    for t, s in pts:
        if s is None:
            if cur:
                segs.append(cur)
            cur = []
        else:
            cur.append(f"{X(t):.1f},{Y(s):.1f}")
    if cur:
        segs.append(cur)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}">',
             f'<rect x="0" y="0" width="{w}" height="{h}" fill="#fafafa" stroke="#ccc"/>']
    if threshold is not None:
        parts.append(f'<line x1="0" x2="{w}" y1="{Y(threshold):.1f}" y2="{Y(threshold):.1f}" '
                     'stroke="#999" stroke-dasharray="3,3"/>')
    for seg in segs:
        if len(seg) == 1:
            x, y = seg[0].split(",")
            parts.append(f'<circle cx="{x}" cy="{y}" r="2" fill="#c00"/>')
        else:
            parts.append(f'<polyline fill="none" stroke="#c00" stroke-width="1.5" points="{" ".join(seg)}"/>')
    parts.append("</svg>")
    return "".join(parts)


MAX_HEATMAPS = 8  # overlays shown per row (a hostile database may hold more)
_JPEG_MAX_BYTES = 256 << 10


def _heatmaps(raw) -> list[tuple[bytes, float | None, float | None]]:
    """``(jpeg bytes, frame, score)`` of a row's heatmap overlays; anything that is not a JPEG is dropped
    (the JSON comes from the database: base64 is decoded strictly and the bytes must start like a JPEG)."""
    import binascii

    if not raw:
        return []
    try:
        items = json.loads(raw)
    except (TypeError, ValueError, RecursionError):
        return []
    out = []
    for e in items if isinstance(items, list) else []:
        b64 = e.get("jpeg") if isinstance(e, dict) else None
        if not isinstance(b64, str) or len(b64) > _JPEG_MAX_BYTES * 4 // 3 + 4:
            continue
        try:
            data = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            continue
        if data[:3] == b"\xff\xd8\xff":
            out.append((data, _num(e.get("frame")), _num(e.get("score"))))
        if len(out) >= MAX_HEATMAPS:
            break
    return out


def heatmaps_html(raw) -> str:
    """The overlays of a row as ``<figure>``s of data: JPEGs (re-encoded from the decoded bytes), captioned."""
    parts = []
    for data, frame, score in _heatmaps(raw):
        cap = ("frame " + (f"{frame:.0f}" if frame is not None else "?")
               + (f", score {score:.2f}" if score is not None else ""))
        parts.append(f'<figure><img class="heat" alt="heatmap, {cap}" '
                     f'src="data:image/jpeg;base64,{base64.b64encode(data).decode()}"><figcaption>{cap}</figcaption>'
                     "</figure>")
    return "".join(parts)


def render(rows: list[dict], title: str = "ffd screen report") -> str:
    """The HTML document for ``rows`` (already in report order)."""
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    fakes = sum(1 for r in rows if r.get("label") == "fake")
    models = sorted({str(r["model_id"]) for r in rows if r.get("model_id")})
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f'<meta http-equiv="Content-Security-Policy" content="{_csp()}">',
           '<meta name="referrer" content="no-referrer">',
           f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
           f"<h1>{escape(title)}</h1>",
           f"<p>{len(rows)} files: {counts.get('done', 0)} scored ({fakes} labelled fake), "
           f"{counts.get('no_face', 0)} without a face, {counts.get('error', 0)} failed. "
           f"Model: {escape(', '.join(models) or '-')}. Generated {escape(time.strftime('%Y-%m-%d %H:%M'))}.</p>",
           "<table><tr><th>#</th><th>face</th><th>file</th><th>score</th><th>label</th><th>faces / frames</th>"
           "<th>score over time</th><th>heatmaps (top frames)</th><th>note</th></tr>"]
    for i, r in enumerate(rows, 1):  # every field from the database is escaped (or is a checked number)
        thumb = ""
        if isinstance(r.get("thumb"), (bytes, bytearray, memoryview)) and r["thumb"]:
            thumb = f'<img alt="face" src="data:image/jpeg;base64,{base64.b64encode(bytes(r["thumb"])).decode()}">'
        ev = _evidence(r.get("evidence"))
        sc = _num(r.get("score"))
        score = f"{sc:.3f}" if sc is not None else _text(r.get("score"))
        label = r.get("label") or str(r.get("status") or "").replace("_", " ")
        cls = r.get("label") if r.get("label") in ("fake", "real", "uncertain") else "err"
        note = r.get("error") or ""
        if note:
            note = f'{_text(r.get("error_type") or "error")}: {_text(note)}'
        out.append(f"<tr><td>{i}</td><td>{thumb}</td><td class=\"path\">{_text(r.get('path'))}</td>"
                   f"<td>{score}</td><td class=\"{cls}\">{_text(label)}</td>"
                   f"<td>{_count(r.get('faces_seen'))} / {_count(r.get('n_frames'))}</td>"
                   f"<td>{timeline_svg(ev, r.get('threshold'))}</td><td>{heatmaps_html(r.get('heatmaps'))}</td>"
                   f"<td class=\"err\">{note}</td></tr>")
    out.append("</table></body></html>")
    return "\n".join(out)


def write_report(db_path: str | os.PathLike, out: str | os.PathLike, title: str = "ffd screen report") -> Path:
    """Render the database at ``db_path`` into the single HTML file ``out``."""
    from .db import ResultsDB

    from ..outputs import atomic_write_text, check_outputs

    out = Path(out)
    check_outputs([db_path], {"--report": out})
    with ResultsDB(db_path, readonly=True) as db:
        rows = list(db.rows("suspicious"))
    try:
        atomic_write_text(out, render(rows, title))  # a full disk keeps the previous report
    except OSError as e:
        raise ConfigError(f"cannot write the report: {e.strerror or e}", path=out,
                          fix="use a writable folder with free space") from e
    return out
