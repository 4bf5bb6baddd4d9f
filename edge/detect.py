"""``ffd detect``: images, folders, videos, cameras and streams in, one JSON line per face out.

:func:`detect_sources` is the command itself. It opens **one** :class:`~edge.forgery.ForgeryDetector`
(one runner, one face detector) for all its sources and sends each by :func:`source_kind`:
images and folders to :func:`detect_paths` (records ``{file, face, box, det_score, score,
label}``, files read and classified in batches; a bad file is a record, not a crash), videos,
cameras and streams to :func:`detect_stream`, which runs the concurrent
:class:`edge.stream.Pipeline` and writes the optional annotated video and overlay window.
:func:`run_detect` consumes one stream into a JSON-lines file and returns its
:class:`~edge.stream.DetectStats` (``ffd bench --video`` and the reliability harness use it);
:class:`DetectSummary` counts the records of a run.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

from .errors import FfdError
from .forgery import DEFAULT_DET_MAX_SIDE, ForgeryDetector
from .outputs import check_outputs, commit, temp_path
from .stream.pipeline import DetectStats, Pipeline
from .stream.sinks import VideoOut, display_available, draw_faces
from .stream.sources import Source, SourceError, open_source


# --- images and folders --------------------------------------------------------------------
def detect_paths(paths: Iterable[str | os.PathLike], model: str | os.PathLike | ForgeryDetector,
                 backend: str = "auto", detector_model: str | os.PathLike | None = None,
                 batch_size: int = 32, max_faces: int | None = None, **runner_kw) -> Iterator[dict]:
    """Images/folders -> one record per face: ``{file, face, box, det_score, score, label}``.

    A file without faces gives ``{file, face: None, faces: 0}``; an unreadable one
    ``{file, face: None, error, error_type}``; a file inside a folder that is not scored (a video, an
    unsupported extension, a symlink loop: :func:`edge.inputs.list_inputs`) ``{file, face: None,
    skipped: reason}``. Files are read and classified ``batch_size`` images at a time, records come
    out in input order (each folder's skipped files after its images).
    """
    from .media import read_image

    own = not isinstance(model, ForgeryDetector)
    det = (ForgeryDetector(model, backend, detector_model=detector_model, batch_size=batch_size, max_faces=max_faces,
                           **runner_kw) if own else model)
    try:
        files = _image_inputs(paths)
        while True:
            chunk, frames, errors, skipped = [], [], {}, {}
            for f, why in files:
                chunk.append(f)
                if why is not None:
                    skipped[len(chunk) - 1] = why
                    continue
                try:
                    frames.append(read_image(f))
                except FfdError as e:
                    errors[len(chunk) - 1] = e
                if len(frames) >= batch_size:
                    break
            if not chunk:
                return
            results = iter(det.process_batch(frames))
            for i, f in enumerate(chunk):
                if i in skipped:
                    yield {"file": str(f), "face": None, "skipped": skipped[i]}
                    continue
                if i in errors:
                    e = errors[i]
                    yield {"file": str(f), "face": None, "error": e.message, "error_type": type(e).__name__}
                    continue
                faces = next(results)
                if not faces:
                    yield {"file": str(f), "face": None, "faces": 0}
                for k, r in enumerate(faces):
                    yield {"file": str(f), "face": k, **r.to_dict()}
    finally:
        if own:
            det.close()


def _image_inputs(paths: Iterable[str | os.PathLike]) -> Iterator[tuple]:
    """``(path, None)`` per image to score, ``(path, reason)`` per file of a folder that is not scored;
    a file given by name is always read (an unreadable one becomes an error record)."""
    from pathlib import Path

    from .inputs import list_inputs

    for p in map(Path, paths):
        try:
            is_dir = p.is_dir()
        except OSError:  # a name too long: read_image says so, as a record
            is_dir = False
        if not is_dir:
            yield p, None
            continue
        listing = list_inputs([p], videos=False)
        yield from ((f, None) for f, _ in listing.files)
        yield from listing.skipped


# --- videos, cameras and streams ------------------------------------------------------------
def detect_stream(source: str | int | Source, model, *, backend: str = "auto", detector_model=None,
                  batch_size: int = 16, max_faces: int | None = None, video_out: str | os.PathLike | None = None,
                  display: bool = False, stats: DetectStats | None = None, source_kw: dict | None = None,
                  runner_kw: dict | None = None, det_max_side: int | None = None, **kw) -> Iterator[dict]:
    """Run :class:`Pipeline` on a source; yield one JSON-ready record per face per frame.

    Record: ``{source, time, frame, track, box, score (smoothed), raw_score, det_score, label}``.
    ``model``: a model path or a :class:`~edge.forgery.ForgeryDetector`. ``stats`` (if given) is
    filled in place. ``kw`` goes to :class:`Pipeline` (``live``, ``pace_fps``, ``every``,
    ``max_frames``, ``smooth``, ``queue_size``, ``stall_timeout_s``); runner options
    (``intra_op_threads``, ``providers``, ``cuda_graph``, ...) go through ``runner_kw`` to
    :func:`~edge.runtime.open_runner`, which routes them; ``det_max_side`` sizes the face
    detector's input of a detector built here (see :class:`~edge.forgery.ForgeryDetector`); a
    given detector is used as it is.
    """
    if video_out:
        check_outputs([None if isinstance(source, (Source, int)) else source,
                       None if isinstance(model, ForgeryDetector) else model], {"--save-video": video_out})
    src = source if isinstance(source, Source) else open_source(source, **(source_kw or {}))
    own_fd = not isinstance(model, ForgeryDetector)
    fd = None
    writer = None
    try:
        fd = (ForgeryDetector(model, backend, detector_model, batch_size, max_faces,
                              det_max_side=det_max_side or DEFAULT_DET_MAX_SIDE, **(runner_kw or {}))
              if own_fd else model)
        pipe = Pipeline(src, fd, batch_size=batch_size, **kw)
        if stats is not None:
            pipe.stats = stats
            stats.source = src.uri
        writer = VideoOut(video_out, src.fps) if video_out else None
        show = display and display_available()
        import cv2

        for fr, faces in pipe:
            if writer is not None or show:
                img = draw_faces(fr.image.copy(), faces)
                if writer is not None:
                    writer.write(img)
                if show:
                    cv2.imshow("ffd detect", img)
                    if cv2.waitKey(1) & 0xFF in (27, ord("q")):
                        break
            for f in faces:
                rec = f.to_dict()  # rounded once, as every record
                yield {"source": fr.origin or src.uri, "time": round(fr.timestamp_s, 3), "frame": fr.index,
                       "track": rec.pop("track_id"), **rec}
    finally:
        if writer is not None:
            writer.close()
        if not isinstance(source, Source):
            src.close()
        if own_fd and fd is not None:
            fd.close()


def classify_source(src: str | int | os.PathLike) -> tuple[str, str | int]:
    """``(kind, target)``: ``kind`` as :func:`source_kind`, ``target`` what to open (the local path of a
    ``file://`` URI, else ``src``). :func:`edge.sources.parse_uri` decides, the classifier of ``open_source``:
    ``ffd detect`` and ``open_source`` never disagree about what a source is."""
    from .media import is_video
    from .stream.sources import parse_uri

    try:
        p = parse_uri(src)
    except OSError:  # a name too long to stat: read as a file, which records why it cannot be read
        return "images", src
    if p.live:
        return "camera", src
    if p.kind == "file":  # a file given by name without a video extension is read as an image (an error record)
        return ("video" if is_video(p.target) else "images"), p.target
    return "images", p.target  # an image or a folder


def source_kind(src: str | int | os.PathLike) -> str:
    """``images`` (an image file or a folder) | ``video`` (a file, also as ``file://``) | ``camera`` (a device,
    a stream or a GStreamer pipeline), as :func:`edge.sources.parse_uri` classifies it; an unknown URI scheme
    is a :class:`~edge.stream.sources.SourceError`."""
    return classify_source(src)[0]


@dataclass
class DetectSummary:
    """Counts of the records of one ``ffd detect`` run (video records are faces only)."""

    faces: int = 0
    fake: int = 0
    no_face: int = 0  # images without a face
    errors: int = 0  # unreadable images
    skipped: int = 0  # files of a folder that are not scored (videos, other extensions, ...), with a reason

    def add(self, rec: dict) -> None:
        if "skipped" in rec:
            self.skipped += 1
        elif "error" in rec:
            self.errors += 1
        elif "score" not in rec:
            self.no_face += 1
        else:
            self.faces += 1
            self.fake += rec["label"] == "fake"

    def __str__(self) -> str:
        return (f"{self.faces} faces ({self.fake} fake), {self.no_face} files without a face, "
                f"{self.errors} unreadable files, {self.skipped} files skipped (not images: see their records)")


def detect_sources(sources: Sequence[str], model: str | os.PathLike, output: str | os.PathLike | None = None, *,
                   backend: str = "auto", detector_model: str | os.PathLike | None = None, batch_size: int = 32,
                   max_faces: int | None = None, threads: int | None = None,
                   log: Callable[[str], None] | None = None, connect_timeout_s: float | None = None,
                   **video_kw) -> DetectSummary:
    """The library function behind ``ffd detect``: JSON lines for every face of every source.

    One :class:`~edge.forgery.ForgeryDetector` (one runner, one face detector) serves every
    source. Sources are grouped by :func:`source_kind`: images and folders go to
    :func:`detect_paths`, each video, camera or stream to :func:`detect_stream` (``video_kw``:
    ``video_out``, ``display``, ``every``, ``max_frames``, ``live``; ``det_max_side``: the face
    detector's input for these, images keep the default); its :meth:`DetectStats.summary` goes
    to ``log`` and a source error is raised as :class:`SourceError` once its records are
    written. ``threads``: ONNX Runtime intra-op threads (dropped when ``auto`` runs TensorRT,
    refused with ``backend="trt"``: see :func:`edge.runtime.route_options`). Records go to
    ``output`` (default: stdout). ``connect_timeout_s``: the overall deadline to open a camera or
    stream (default ``FFD_CONNECT_TIMEOUT_S`` or 15 s), then a :class:`SourceError`.
    """
    from .settings import check, connect_timeout_s as connect_timeout

    threads = check("threads", threads)  # before any source or output is opened
    source_kw = {"connect_timeout_s": connect_timeout(connect_timeout_s)}
    check_outputs([*sources, model, detector_model], {"-o/--output": output,
                                                      "--save-video": video_kw.get("video_out")})
    batch_size, max_faces = check("batch_size", batch_size, allow_none=False), check("max_faces", max_faces)
    if detector_model is not None:  # a given detector model that is not a face detector, too
        from .faces.detector import check_yunet_model, find_yunet_model

        check_yunet_model(find_yunet_model(detector_model))
    by_kind: dict[str, list] = {}
    for s in sources:
        kind, target = classify_source(s)
        by_kind.setdefault(kind, []).append(target)
    runner_kw = {"intra_op_threads": threads} if threads else {}  # routed by open_runner
    stream_side = video_kw.pop("det_max_side", None) or DEFAULT_DET_MAX_SIDE

    def records() -> Iterator[dict]:
        with ForgeryDetector(model, backend, detector_model, batch_size, max_faces, **runner_kw) as fd:
            for kind, srcs in by_kind.items():
                if kind == "images":
                    fd.det_max_side = DEFAULT_DET_MAX_SIDE
                    yield from detect_paths(srcs, fd, batch_size=batch_size)
                    continue
                fd.det_max_side = stream_side
                for src in srcs:
                    stats = DetectStats()
                    yield from detect_stream(src, fd, stats=stats, batch_size=batch_size, source_kw=source_kw,
                                             **video_kw)
                    if log is not None:
                        from .inputs import printable

                        log(f"{printable(src)}: {stats.summary()}")
                    if stats.error:
                        raise SourceError(stats.error, path=src)

    summary = DetectSummary()
    # -o is written to a temporary file beside it and renamed over it once records came out: a run
    # that fails to start (bad model, bad source) leaves an existing file as it was
    tmp = temp_path(output) if output else None
    out = open(tmp, "w") if tmp is not None else sys.stdout
    recs = records()
    wrote = False
    from .signals import Interrupted

    try:
        for rec in recs:
            out.write(json.dumps(rec) + "\n")
            wrote = True
            summary.add(rec)
    except Interrupted as e:  # Ctrl-C is how a camera run ends: the records so far are kept (-o renamed)
        e.add_note(f"{summary}" + (f" -> {output}" if output else ""))
        raise
    finally:
        try:
            recs.close()  # closes the detector now, also when writing failed
        finally:
            if tmp is not None:
                _finish_output(out, tmp, output, keep=wrote or sys.exc_info()[0] is None)
    return summary


def _finish_output(f, tmp, output, keep: bool) -> None:
    """Close the temporary output; rename it over ``output`` when the run produced it, else drop it."""
    try:
        f.close()
    finally:
        if keep:
            commit(tmp, output)
        else:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def run_detect(source, model, jsonl: str | os.PathLike | None = None, **kw) -> DetectStats:
    """Consume :func:`detect_stream`, writing JSON lines to ``jsonl`` (if given); return the stats."""
    stats = DetectStats()
    if jsonl:
        check_outputs([source if not isinstance(source, (Source, int)) else None,
                       model if not isinstance(model, ForgeryDetector) else None],
                      {"jsonl": jsonl, "video_out": kw.get("video_out")})
    tmp = temp_path(jsonl) if jsonl else None
    out = open(tmp, "w") if tmp is not None else None
    wrote = False
    try:
        for rec in detect_stream(source, model, stats=stats, **kw):
            if out is not None:
                out.write(json.dumps(rec) + "\n")
                wrote = True
    finally:
        if out is not None:
            _finish_output(out, tmp, jsonl, keep=wrote or sys.exc_info()[0] is None)
    return stats
