"""``ffd detect``: images, folders, videos, cameras and streams in, one JSON line per face out.

:func:`detect_sources` is the command itself. It opens **one** :class:`~edge.forgery.ForgeryDetector`
(one runner, one face detector) for all its sources and sends each by :func:`source_kind`:
images and folders to :func:`detect_paths` (records ``{file, face, box, det_score, score,
label}``, files read and classified in batches; a bad file is a record, not a crash), videos
(also those found in the folders, after the images; a bad one of these is an error record),
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

from .errors import FfdError, InputError
from .forgery import DEFAULT_DET_MAX_SIDE, ForgeryDetector
from .outputs import check_outputs, commit, temp_path
from .stream.pipeline import DetectStats, Pipeline
from .stream.sinks import VideoOut, display_available, draw_faces
from .stream.sources import Source, SourceError, open_source


# --- images and folders --------------------------------------------------------------------
def detect_paths(paths: Iterable[str | os.PathLike], model: str | os.PathLike | ForgeryDetector,
                 backend: str = "auto", detector_model: str | os.PathLike | None = None,
                 batch_size: int = 32, max_faces: int | None = None, heatmaps=None, folder_videos: bool = False,
                 **runner_kw) -> Iterator[dict]:
    """Images/folders -> one record per face: ``{file, face, box, det_score, score, label}``.

    ``heatmaps`` (an :class:`edge.heatmap.HeatmapWriter` or a folder): faces at or above the threshold get an
    overlay image there (``STEM_faceK.jpg``, never overwriting a file) and its path in the record's ``heatmap``.

    A file without faces gives ``{file, face: None, faces: 0}``; an unreadable one
    ``{file, face: None, error, error_type}``; a file inside a folder that is not scored (a video, an
    unsupported extension, a symlink loop: :func:`edge.inputs.list_inputs`) ``{file, face: None,
    skipped: reason}``. Files are read and classified ``batch_size`` images at a time, records come
    out in input order (each folder's skipped files after its images). ``folder_videos``: the videos of the
    folders are played by the caller (:func:`detect_sources` does, :func:`folder_video_files`), so they get no
    ``skipped`` record here.
    """
    from pathlib import Path

    from .media import read_image

    own = not isinstance(model, ForgeryDetector)
    det = (ForgeryDetector(model, backend, detector_model=detector_model, batch_size=batch_size, max_faces=max_faces,
                           **runner_kw) if own else model)
    hm_out = _heatmap_writer(heatmaps)
    try:
        files = _image_inputs(paths, folder_videos)
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
            results = iter(det.process_batch(frames, heatmaps=True) if hm_out is not None
                           else det.process_batch(frames))
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
                    rec = {"file": str(f), "face": k, **r.to_dict()}
                    if hm_out is not None and r.heatmap is not None:
                        rec["heatmap"] = hm_out.write(f"{Path(f).stem}_face{k}", r.crop, r.heatmap)
                    yield rec
    finally:
        if own:
            det.close()


def _heatmap_writer(heatmaps):
    """``None``, or the :class:`~edge.heatmap.HeatmapWriter` of ``heatmaps`` (a writer or a folder)."""
    if heatmaps is None:
        return None
    from .heatmap import HeatmapWriter

    return heatmaps if isinstance(heatmaps, HeatmapWriter) else HeatmapWriter(heatmaps)


def _stream_heatmaps(fd: ForgeryDetector, out, frame, faces, stem: str, best: dict, per_track: int = 3) -> dict:
    """Videos/cameras: overlays of flagged faces, each track's most suspicious frames only (a track gets a new
    file when its raw score beats the best one written for it, at most ``per_track``); the extra inference runs
    on those few crops only. Returns ``{face index: overlay path}``."""
    from .faces import Detection, crop_face

    todo = []
    for i, f in enumerate(faces):
        raw = float(f.extra.get("raw_score", f.score))
        key = f.track_id if f.track_id is not None else ("frame", i)
        n, top = best.get(key, (0, -1.0))
        if f.label == "fake" and raw >= fd.card.threshold and raw > top and n < per_track:
            todo.append((i, key, raw))
    if not todo:
        return {}
    crops = [crop_face(frame, Detection(faces[i].box, faces[i].det_score, faces[i].landmarks), fd.spec)[0]
             for i, _, _ in todo]
    _, maps = fd.classify_crops_with_heatmaps(crops, only_flagged=False)
    paths = {}
    for (i, key, raw), c, m in zip(todo, crops, maps):
        if m is None:
            continue
        n, _ = best.get(key, (0, -1.0))
        best[key] = (n + 1, raw)
        tid = faces[i].track_id
        paths[i] = out.write(f"{stem}_t{'x' if tid is None else tid}", c, m)
    return paths


def _source_stem(uri) -> str:
    """A file-name stem for a source's overlays: the video's stem, ``camN`` for a camera, else ``stream``
    (:func:`edge.sources.parse_uri` classifies, as everywhere)."""
    from pathlib import Path

    from .stream.sources import parse_uri

    try:
        p = parse_uri(uri)
    except (SourceError, OSError):
        return "stream"
    if p.kind in ("v4l2", "csi"):
        return "cam" + "".join(ch for ch in str(uri) if ch.isdigit())
    if p.live:
        return "stream"
    return Path(str(p.target)).stem or "video"


def _image_inputs(paths: Iterable[str | os.PathLike], folder_videos: bool = False) -> Iterator[tuple]:
    """``(path, None)`` per image to score, ``(path, reason)`` per file of a folder that is not scored (its
    videos too, unless ``folder_videos``: they are played elsewhere); a file given by name is always read (an
    unreadable one becomes an error record)."""
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
        listing = list_inputs([p], videos=folder_videos)
        yield from ((f, None) for f, kind in listing.files if kind == "image")
        yield from listing.skipped


def folder_video_files(folder: str | os.PathLike) -> list:
    """The videos under ``folder`` (recursively, sorted per folder, as :func:`edge.inputs.list_inputs` walks it):
    what ``ffd detect FOLDER`` plays after scoring the folder's images."""
    from .inputs import list_inputs

    return [f for f, kind in list_inputs([folder], images=False).files if kind == "video"]


# --- videos, cameras and streams ------------------------------------------------------------
def detect_stream(source: str | int | Source, model, *, backend: str = "auto", detector_model=None,
                  batch_size: int = 16, max_faces: int | None = None, video_out: str | os.PathLike | None = None,
                  display: bool = False, stats: DetectStats | None = None, source_kw: dict | None = None,
                  runner_kw: dict | None = None, det_max_side: int | None = None, serve=None,
                  heatmaps=None, **kw) -> Iterator[dict]:
    """Run :class:`Pipeline` on a source; yield one JSON-ready record per face per frame.

    Record: ``{source, time, frame, track, box, score (smoothed), raw_score, det_score, label}``.
    ``model``: a model path or a :class:`~edge.forgery.ForgeryDetector`. ``stats`` (if given) is
    filled in place. ``kw`` goes to :class:`Pipeline` (``live``, ``pace_fps``, ``every``,
    ``max_frames``, ``smooth``, ``queue_size``, ``stall_timeout_s``); runner options
    (``intra_op_threads``, ``providers``, ``cuda_graph``, ...) go through ``runner_kw`` to
    :func:`~edge.runtime.open_runner`, which routes them; ``det_max_side`` sizes the face
    detector's input of a detector built here (see :class:`~edge.forgery.ForgeryDetector`); a
    given detector is used as it is. ``heatmaps`` (a folder or an :class:`edge.heatmap.HeatmapWriter`): overlays
    of flagged faces, a track's most suspicious frames only, path in the record's ``heatmap``.
    ``serve``: the live browser view, a started
    :class:`~edge.stream.live.LiveServer` (the caller's: told ``end`` when this source ends) or a
    ``HOST:PORT`` / port to bind here, before the source opens, and close at the end.
    """
    if video_out:
        check_outputs([None if isinstance(source, (Source, int)) else source,
                       None if isinstance(model, ForgeryDetector) else model], {"--save-video": video_out})
    server, own_server = _live_server(serve)
    try:
        src = source if isinstance(source, Source) else open_source(source, **(source_kw or {}))
    except BaseException:
        if own_server:
            server.close()
        raise
    own_fd = not isinstance(model, ForgeryDetector)
    fd = None
    writer = None
    try:
        fd = (ForgeryDetector(model, backend, detector_model, batch_size, max_faces,
                              det_max_side=det_max_side or DEFAULT_DET_MAX_SIDE, **(runner_kw or {}))
              if own_fd else model)
        pipe = Pipeline(src, fd, batch_size=batch_size, **kw)
        hm_out = _heatmap_writer(heatmaps) if heatmaps is not None and fd._heatmaps_on() else None
        hm_stem, hm_best = _source_stem(src.uri), {}
        if stats is not None:
            pipe.stats = stats
            stats.source = src.uri
        writer = VideoOut(video_out, src.fps) if video_out else None
        show = display and display_available()
        if server is not None:
            server.source = src.uri
            server.set_model(fd.card.name, fd.card.threshold)
        import cv2

        for fr, faces in pipe:
            img = None
            if writer is not None or show:
                img = draw_faces(fr.image.copy(), faces)
                if writer is not None:
                    writer.write(img)
            if server is not None:  # never blocks: JPEG-encoded only when a browser waits for a frame
                server.publish(fr, faces, pipe.stats, annotated=img)
            if show:
                cv2.imshow("ffd detect", img)
                if cv2.waitKey(1) & 0xFF in (27, ord("q")):
                    break
            hm_paths = (_stream_heatmaps(fd, hm_out, fr.image, faces, f"{hm_stem}_f{fr.index}", hm_best)
                        if hm_out is not None and faces else {})
            for i, f in enumerate(faces):
                rec = f.to_dict()  # rounded once, as every record
                yield {"source": fr.origin or src.uri, "time": round(fr.timestamp_s, 3), "frame": fr.index,
                       "track": rec.pop("track_id"), **rec, **({"heatmap": hm_paths[i]} if i in hm_paths else {})}
    finally:
        if own_server:
            server.close()
        elif server is not None:
            server.end()
        if writer is not None:
            writer.close()
        if not isinstance(source, Source):
            src.close()
        if own_fd and fd is not None:
            fd.close()


def _live_server(serve) -> tuple:
    """``(server, owned)`` for ``serve``: None, a :class:`~edge.stream.live.LiveServer` (started if it was
    not) or a ``HOST:PORT``/port value, bound now (a :class:`~edge.errors.ConfigError` if it cannot be)."""
    if serve is None or serve is False:
        return None, False
    from .stream.live import LiveServer, parse_serve

    if isinstance(serve, LiveServer):
        return serve.start(), False
    return LiveServer(*parse_serve(serve)).start(), True


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
                   heatmaps: str | os.PathLike | None = None, **video_kw) -> DetectSummary:
    """The library function behind ``ffd detect``: JSON lines for every face of every source.

    One :class:`~edge.forgery.ForgeryDetector` (one runner, one face detector) serves every
    source. Sources are grouped by :func:`source_kind`: images and folders go to
    :func:`detect_paths`, each video, camera or stream to :func:`detect_stream` (``video_kw``:
    ``video_out``, ``display``, ``every``, ``max_frames``, ``live``; ``det_max_side``: the face
    detector's input for these, images keep the default; ``serve``: ``HOST:PORT`` of one live browser
    view for all of them, :mod:`edge.stream.live`, bound before anything opens); its :meth:`DetectStats.summary` goes
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
                                                      "--save-video": video_kw.get("video_out"),
                                                      "--heatmaps": heatmaps}, folders=("--heatmaps",))
    batch_size, max_faces = check("batch_size", batch_size, allow_none=False), check("max_faces", max_faces)
    if detector_model is not None:  # a given detector model that is not a face detector, too
        from .faces.detector import check_yunet_model, find_yunet_model

        check_yunet_model(find_yunet_model(detector_model))
    by_kind: dict[str, list] = {}
    in_folder: set = set()  # videos found in folders: a bad one is an error record, as a bad image is
    for s in sources:
        kind, target = classify_source(s)
        by_kind.setdefault(kind, []).append(target)
        if kind == "images" and _is_dir(target):  # a folder's videos are played as videos, after all images
            found = folder_video_files(target)
            in_folder.update(found)
            by_kind.setdefault("video", []).extend(found)
    by_kind = {k: v for k, v in by_kind.items() if v}
    runner_kw = {"intra_op_threads": threads} if threads else {}  # routed by open_runner
    stream_side = video_kw.pop("det_max_side", None) or DEFAULT_DET_MAX_SIDE
    server = _serve_sources(video_kw.pop("serve", None), by_kind, log)  # bound before the model or a source opens

    def records() -> Iterator[dict]:
        hm_out = _heatmap_writer(heatmaps)  # --heatmaps DIR: overlays of flagged faces (one warning without them)
        with ForgeryDetector(model, backend, detector_model, batch_size, max_faces, heatmaps=hm_out is not None,
                             **runner_kw) as fd:
            if hm_out is not None and not fd.heatmaps:
                hm_out = None  # the model has no features output: said once, the run goes on without overlays
            for kind, srcs in by_kind.items():
                if kind == "images":
                    fd.det_max_side = DEFAULT_DET_MAX_SIDE
                    yield from detect_paths(srcs, fd, batch_size=batch_size, heatmaps=hm_out, folder_videos=True)
                    continue
                fd.det_max_side = stream_side
                for src in srcs:
                    stats, etype = DetectStats(), "SourceError"
                    try:
                        yield from detect_stream(src, fd, stats=stats, batch_size=batch_size, source_kw=source_kw,
                                                 serve=server, heatmaps=hm_out, **video_kw)
                    except InputError as e:  # a video that does not open (SourceError is one)
                        if src not in in_folder:
                            raise
                        stats.error, etype = e.message, type(e).__name__
                    if log is not None:
                        from .inputs import printable

                        log(f"{printable(src)}: {stats.summary()}")
                    if stats.error and src in in_folder:
                        yield {"file": str(src), "face": None, "error": stats.error, "error_type": etype}
                    elif stats.error:
                        raise SourceError(stats.error, path=src)

    summary = DetectSummary()
    # -o is written to a temporary file beside it and renamed over it once records came out: a run
    # that fails to start (bad model, bad source) leaves an existing file as it was
    try:
        tmp = temp_path(output) if output else None
        out = open(tmp, "w") if tmp is not None else sys.stdout
    except BaseException:
        if server is not None:
            server.close()
        raise
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
            if server is not None:
                server.close()
        finally:
            if tmp is not None:
                _finish_output(out, tmp, output, keep=wrote or sys.exc_info()[0] is None)
    return summary


def _is_dir(p) -> bool:
    try:
        return os.path.isdir(p)
    except (OSError, ValueError):  # a name too long or with a NUL: read as a file, which records why
        return False


def _serve_sources(serve, by_kind: dict, log):
    """``--serve``: one :class:`~edge.stream.live.LiveServer` for every video/camera source, bound now; the
    URL (and a warning when bound beyond this machine) goes to ``log``."""
    if serve is None:
        return None
    if not any(kind != "images" for kind in by_kind):
        from .errors import ConfigError

        raise ConfigError("--serve shows videos, cameras and streams, and the sources are images only",
                          fix="drop --serve, or give a video file, a camera or a stream")
    server, _ = _live_server(serve)
    if log is not None:
        log(f"live view: {server.url}" + (
            f" (bound to {server.host}: anyone who can reach this machine sees the stream; no authentication)"
            if server.public else " (this machine only)"))
    return server


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
