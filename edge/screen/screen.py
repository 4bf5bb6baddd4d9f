"""``ffd screen``: score every video and image of an archive into a resumable SQLite database.

Steps per file (:func:`sample_file` then :func:`score_sample`, the same in-process, in worker
processes and on Ray):

1. *Sampling*: ``n_frames`` frames spread uniformly over the video (default 32, the centres of
   equal segments), or one frame every ``every_s`` seconds. An image is one frame.
2. *Faces*: the model's face detector on each sampled frame; the ``max_faces`` largest faces
   are cropped with the model's spec and classified in one batch.
3. *Aggregation* (documented rule): a frame's score is the highest P(fake) among its faces
   (a frame is as suspicious as its most suspicious face); the file's score aggregates the
   scores of frames that have a face: ``mean`` (default, as the seed papers evaluate videos),
   ``max``, or ``topk:K`` (mean of the K highest). Frames without a face do not count; a file
   where no sampled frame has a face gets status ``no_face`` and no score. The label is the
   model card's label of that score (its threshold and uncertain band).
4. *Evidence*: per sampled frame ``{frame, t, score, faces, box}`` and a thumbnail of the
   most suspicious face are kept in the row (see :mod:`edge.screen.db`).

Errors of one file (corrupt, truncated, zero-length, audio-only, unsupported) become a row
with status ``error`` and the message; they never stop the screening. Decoding runs in
``workers`` processes (each with its own detector and runner, one thread each); the main
process writes each row as soon as it arrives, in its own transaction, so a killed run
loses only the files in flight and re-running the same command resumes.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from ..errors import ConfigError, FfdError, InputError
from ..media import RUN_CHECK_FILES
from .db import TRANSIENT_ERRORS, ResultsDB, content_hash

SAMPLING = ("uniform", "keyframes")  # --sample
PREFETCH_FRAMES = 8  # sampled frames decoded ahead of face detection (bounded: memory stays flat)


@dataclass(frozen=True)
class ScreenSettings:
    """Sampling and aggregation; part of the resume key (changing them re-screens)."""

    n_frames: int | None = 32
    every_s: float | None = None
    aggregation: str = "mean"
    max_faces: int = 4
    sample: str = "uniform"  # or "keyframes": only keyframes are decoded (n_frames of them, None: all)

    def __post_init__(self):
        from ..settings import check

        if self.sample not in SAMPLING:
            raise ConfigError(f"unknown --sample {self.sample!r}", fix=f"use one of {', '.join(SAMPLING)}")
        if self.sample == "keyframes":
            if self.every_s is not None:
                raise ConfigError("--sample keyframes and --every-s both choose the frames of a video",
                                  fix="pass one of them (with keyframes, --frames N takes N of the keyframes)")
            if self.n_frames is not None:
                object.__setattr__(self, "n_frames", check("frames", self.n_frames))
        elif self.every_s is not None:  # finite, within edge.settings.RANGES (nan/inf/0 would never advance)
            object.__setattr__(self, "every_s", check("every_s", self.every_s))
            object.__setattr__(self, "n_frames", None)
        elif not self.n_frames:
            raise ConfigError("give --frames N (N >= 1) or --every-s SECONDS")
        else:
            object.__setattr__(self, "n_frames", check("frames", self.n_frames))
        object.__setattr__(self, "max_faces", check("max_faces", self.max_faces, allow_none=False))
        parse_aggregation(self.aggregation)

    def key(self) -> str:
        d = asdict(self)
        if d["sample"] == "uniform":  # the default: keys (and resumes) of databases made before it existed
            del d["sample"]
        return json.dumps(d, sort_keys=True)


def parse_aggregation(how: str) -> tuple[str, int]:
    if how in ("mean", "max"):
        return how, 0
    if how.startswith("topk:") and how[5:].isdigit() and int(how[5:]) >= 1:
        return "topk", int(how[5:])
    raise ConfigError(f"unknown aggregation {how!r}", fix="use mean, max or topk:K (e.g. topk:5)")


def aggregate(frame_scores: Sequence[float], how: str = "mean") -> float | None:
    """The file's score from the scores of frames that have a face (None if there are none)."""
    s = np.asarray([x for x in frame_scores if x is not None], np.float64)
    if s.size == 0:
        return None
    kind, k = parse_aggregation(how)
    if kind == "mean":
        return float(s.mean())
    if kind == "max":
        return float(s.max())
    return float(np.sort(s)[::-1][:k].mean())


# --- discovery --------------------------------------------------------------------------------
def discover(paths: Iterable[str | os.PathLike]) -> list[tuple[Path, str]]:
    """``[(absolute path, kind)]``: folders searched recursively for videos and images; files as given.

    Files named explicitly keep whatever extension they have (an unsupported one becomes an
    error row); inside folders only video/image extensions are taken. :func:`discover_all` also
    returns the files left out, each with its reason."""
    return discover_all(paths)[0]


def discover_all(paths: Iterable[str | os.PathLike]):
    """``(files, listing)``: :func:`discover`'s files, and the :class:`edge.inputs.Listing` that says
    why every other file under ``paths`` is not screened (unsupported extension, no decoder, symlink loop...).
    Symlinked sub-folders are followed (once: loops are recognised by device and inode)."""
    from ..inputs import list_inputs

    listing = list_inputs(paths)
    out: dict[Path, str] = {}
    for p, kind in listing.files:
        try:
            out.setdefault(p.resolve(), kind)
        except (OSError, RuntimeError):  # a link that changed under us: screen it by the name found
            out.setdefault(p.absolute(), kind)
    return sorted(out.items(), key=lambda t: str(t[0])), listing


def run_fingerprint(model: str | os.PathLike, card, detector_model, settings: "ScreenSettings") -> tuple[str, dict]:
    """``(fingerprint, what it covers)`` of the settings that make a row: the model file's sha256, its
    card id and threshold, the face detector (kind, model file sha256, score threshold) and the
    sampling/aggregation settings. A re-run resumes only rows with the same fingerprint."""
    import hashlib

    from ..runtime.engine_cache import sha256_file as sha

    det: dict = {"kind": card.spec.detector}
    if card.spec.detector == "yunet":
        from ..faces.detector import find_yunet_model

        det["model_sha256"] = sha(find_yunet_model(detector_model))
    if card.spec.detector != "none":
        from ..forgery import DEFAULT_DET_MAX_SIDE

        det.update(score_threshold=card.spec.det_score_threshold, max_side=DEFAULT_DET_MAX_SIDE)
    what = {"model_sha256": sha(model), "model_id": card.model_id(), "threshold": card.threshold,
            "uncertain_band": card.uncertain_band, "detector": det, "settings": json.loads(settings.key())}
    fp = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:20]
    return fp, what


# --- one file: sample + detect, then classify + aggregate -------------------------------------
@dataclass
class FileSample:
    """What decoding and detection found in one file (picklable; crops travel to the classifier)."""

    path: str
    kind: str
    duration_s: float | None = 0.0  # None: unknown (the container's fps/duration is not believable)
    frames: list = field(default_factory=list)  # [{frame, t, faces, boxes}]
    crops: np.ndarray | None = None  # (K, S, S, 3) uint8 BGR
    crop_frame: list = field(default_factory=list)  # index into frames for each crop
    error: str | None = None
    error_type: str | None = None
    elapsed_s: float = 0.0
    size: int | None = None  # stat() and content hash of the file, taken where it is decoded
    mtime: float | None = None
    content_hash: str | None = None

    def read_stat(self) -> None:
        """Fill size, mtime and content hash; a file that cannot be read becomes the sample's error."""
        try:
            st = os.stat(self.path)
            h = content_hash(self.path) if st.st_size else None
        except OSError as e:
            self.error = self.error or f"cannot stat the file: {e.strerror or e}"
            return
        self.size, self.mtime, self.content_hash = st.st_size, st.st_mtime, h


def _iter_frames(path: str, kind: str, settings: ScreenSettings, sample: FileSample, on_open=None):
    """The sampled ``(index, t, frame)`` of one file; ``on_open(reader)`` is told the video's reader."""
    from ..media import VideoReader, read_image

    if kind == "image":
        yield 0, 0.0, read_image(path)
        return
    if kind != "video":
        raise InputError(f"unsupported file type {Path(path).suffix or '(no extension)'!r}", path=path,
                         fix="screen videos (.mp4, .avi, .mkv, ...) or images (.jpg, .png, ...)")
    with VideoReader(path) as r:
        if on_open is not None:
            on_open(r)
        info = r.info
        sample.duration_s = info.duration_s  # None: the container's fps or duration is not believable
        if settings.sample == "keyframes":
            frames = r.frames(n_frames=settings.n_frames, keyframes=True)
        elif settings.every_s is not None and info.fps > 0:
            frames = r.frames(every=max(1, round(info.fps * settings.every_s)))
        else:  # every_s without a usable fps: as many frames as the duration gives, or the default 32
            n = settings.n_frames or (max(1, math.ceil(info.duration_s / settings.every_s)) if info.duration_s
                                      else 32)
            frames = r.frames(n_frames=n)
        for item in frames:
            yield item
        if r.decoded and info.fps and r.decoded != info.frame_count:  # the frames that really decode win
            sample.duration_s = r.decoded / info.fps


def sample_file(path: str, kind: str, settings: ScreenSettings, detector, spec,
                prefetched: "tuple[FileSample, Iterable] | None" = None) -> FileSample:
    """Decode the sampled frames of one file, detect faces, crop them. Errors go into the sample.

    ``prefetched``: ``(sample, frames)`` decoded by a :class:`Prefetcher` (its errors are raised here, as
    if decoded here)."""
    import cv2

    from ..faces import crop_face

    from ..media import is_alloc_failure

    t0 = time.perf_counter()
    s = FileSample(path=str(path), kind=kind) if prefetched is None else prefetched[0]
    source = _iter_frames(str(path), kind, settings, s) if prefetched is None else prefetched[1]
    crops = []
    try:
        for idx, t, frame in source:
            dets = detector.detect(frame)[: settings.max_faces]
            s.frames.append({"frame": int(idx), "t": round(float(t), 3), "faces": len(dets),
                             "boxes": [[round(float(v), 1) for v in d.box] for d in dets]})
            for d in dets:
                crops.append(crop_face(frame, d, spec)[0])
                s.crop_frame.append(len(s.frames) - 1)
    except InputError as e:  # a fault of this file; transient kinds (timeout, memory) are retried next run
        s.error, s.error_type = e.message, type(e).__name__
    except FfdError:  # the run's own model, detector or settings: the run stops, no row says otherwise
        raise
    except (cv2.error, OSError, MemoryError) as e:  # decoder failures of this one file
        s.error = (str(e).strip().splitlines() or [""])[-1][:500] or type(e).__name__
        s.error_type = "OutOfMemoryError" if is_alloc_failure(e) else type(e).__name__
    if crops:
        s.crops = np.stack(crops)
    s.elapsed_s = time.perf_counter() - t0
    s.read_stat()
    return s


def is_transient(row: dict) -> bool:
    """An error row whose cause is the run's resources or deadline (retried by the next run)."""
    return row.get("status") == "error" and row.get("error_type") in TRANSIENT_ERRORS


def _thumb(crop: np.ndarray, side: int = 96) -> bytes | None:
    import cv2

    if crop.shape[0] != side:
        crop = cv2.resize(crop, (side, side),
                          interpolation=cv2.INTER_AREA if crop.shape[0] > side else cv2.INTER_LINEAR)
    ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return buf.tobytes() if ok else None


HEATMAP_TOP_FRAMES = 3  # flagged files: heatmaps of this many top frames go into the row (and the report)
HEATMAP_SIDE = 128      # px of each stored overlay (JPEG)


def _heatmap_evidence(sample: FileSample, frame_scores: list, frame_best: list, scores: np.ndarray, threshold: float,
                      heatmaps_of) -> str | None:
    """JSON list of the top frames' overlays ``{frame, t, score, jpeg (base64)}`` (most suspicious first), or None.

    Only the most suspicious face of each of the :data:`HEATMAP_TOP_FRAMES` top frames, at or above the
    threshold, is mapped: ``heatmaps_of(crops) -> maps`` runs on those few crops (a second, small inference),
    so screening classifies every other face on the plain scores path."""
    import base64

    from ..heatmap import encode_jpeg, overlay

    order = sorted((i for i, sc in enumerate(frame_scores) if sc is not None), key=lambda i: -frame_scores[i])
    top = [fi for fi in order if frame_best[fi] is not None and scores[frame_best[fi]] >= threshold]
    top = top[:HEATMAP_TOP_FRAMES]
    if not top:
        return None
    out = []
    for fi, heat in zip(top, heatmaps_of([sample.crops[frame_best[fi]] for fi in top])):
        jpg = None if heat is None else encode_jpeg(overlay(sample.crops[frame_best[fi]], heat), side=HEATMAP_SIDE)
        if jpg:
            out.append({"frame": sample.frames[fi]["frame"], "t": sample.frames[fi]["t"],
                        "score": round(float(frame_scores[fi]), 5), "jpeg": base64.b64encode(jpg).decode("ascii")})
    return json.dumps(out) if out else None


def finish_row(sample: FileSample, scores: np.ndarray | None, card, settings: ScreenSettings,
               heatmaps_of=None) -> dict:
    """Aggregate the crop scores of a sample into the database row (see :mod:`edge.screen.db`).

    ``heatmaps_of(crops) -> maps`` (given when the model has the heatmap output): a file labelled fake keeps
    the overlays of its top frames in ``heatmaps`` (:func:`_heatmap_evidence`)."""
    row = {"path": sample.path, "kind": sample.kind, "aggregation": settings.aggregation,
           "model_id": card.model_id(), "threshold": card.threshold, "settings": settings.key(),
           "duration_s": None if sample.duration_s is None else round(sample.duration_s, 3),
           "n_frames": len(sample.frames),
           "faces_seen": int(sum(f["faces"] for f in sample.frames)), "elapsed_s": round(sample.elapsed_s, 3),
           "screened_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "size": sample.size, "mtime": sample.mtime,
           "content_hash": sample.content_hash}
    if sample.error is not None and (not sample.frames or sample.error_type in TRANSIENT_ERRORS):
        # a timeout or an allocation failure is never a result, not even a partial one: an error row that
        # the next run retries (never no_face)
        row.update(status="error", error=sample.error, error_type=sample.error_type)
        return row
    if sample.error is not None:  # frames decoded before the failure still count; keep the message
        row.update(error=sample.error, error_type=sample.error_type)
    scores = np.zeros(0) if scores is None else np.asarray(scores, np.float64)
    frame_scores: list[float | None] = [None] * len(sample.frames)
    frame_box: list[list | None] = [None] * len(sample.frames)  # box of each frame's most suspicious face
    frame_best: list[int | None] = [None] * len(sample.frames)  # crop index of each frame's most suspicious face
    first: dict[int, int] = {}  # frame -> index of its first crop
    for k, (fi, sc) in enumerate(zip(sample.crop_frame, scores)):
        first.setdefault(fi, k)
        if frame_scores[fi] is None or sc > frame_scores[fi]:
            frame_scores[fi], frame_box[fi] = float(sc), sample.frames[fi]["boxes"][k - first[fi]]
            frame_best[fi] = k
    row["evidence"] = json.dumps([
        {"frame": f["frame"], "t": f["t"], "faces": f["faces"], "score": None if s is None else round(s, 5), "box": b}
        for f, s, b in zip(sample.frames, frame_scores, frame_box)])
    score = aggregate(frame_scores, settings.aggregation)
    if score is None:
        row.update(status="no_face", score=None, label=None, thumb=None)
        return row
    row.update(status="done", score=round(score, 6), label=card.label(score),
               thumb=_thumb(sample.crops[int(np.argmax(scores))]))
    if heatmaps_of is not None and row["label"] == "fake":
        row["heatmaps"] = _heatmap_evidence(sample, frame_scores, frame_best, scores, card.threshold, heatmaps_of)
    return row


# --- local execution (in-process or worker processes) -----------------------------------------
_W: dict = {}


def _worker_init(model: str, backend: str, detector_model, runner_kw: dict, settings: ScreenSettings,
                 threads: int | None, decode_threads: int | None = None) -> None:
    import cv2

    from ..forgery import ForgeryDetector
    from ..media import set_decode_threads

    if threads:
        cv2.setNumThreads(threads)
    set_decode_threads(decode_threads)
    fd = ForgeryDetector(model, backend, detector_model, **runner_kw)
    _W.update(fd=fd, settings=settings)


def worker_threads(workers: int, cpus: int | None = None) -> tuple[int | None, int | None]:
    """``(OpenCV threads, decode threads)`` of each screening process with ``workers`` worker processes on
    ``cpus`` cores (default: this machine's); None: the library's own default (in-process, ``-j 0``/``-j 1``).

    Several workers: one OpenCV thread each (ONNX Runtime gets one too, in :func:`screen_archive`), and an equal
    share of the cores for FFmpeg, at least one: FFmpeg's automatic frame threads cost 20-30 % more CPU per
    decoded frame than one thread (libx264 720p and 1080p, this project's machine), CPU the other workers need.
    On 2 cores with ``-j 2`` that took 32 files of 720p H.264 from 29.4x to 32.3x real time (docs/archives.md).
    ``FFD_DECODE_THREADS`` overrides the share (:func:`edge.media.decode_threads`)."""
    if workers <= 1:
        return None, None
    cpus = cpus or os.cpu_count() or 1
    return 1, max(1, cpus // workers)


def _pool_worker_init(*init_args) -> None:
    """Initializer of a worker process: Ctrl-C is the parent's to handle (see :mod:`edge.signals`)."""
    from ..signals import worker_signals

    worker_signals()
    _worker_init(*init_args)


def score_sample(fd, sample: FileSample, settings: ScreenSettings) -> dict:
    """Classify the crops of ``sample`` with the ForgeryDetector ``fd`` and build the row (local and Ray)."""
    from ..media import is_alloc_failure

    scores = None
    if sample.crops is not None and sample.error_type not in TRANSIENT_ERRORS:
        try:
            scores = fd.classify_crops(list(sample.crops))
        except FfdError:  # a model that breaks its contract: the run stops
            raise
        except Exception as e:  # an allocation failure is this run's, retried next time; anything else a bug
            if not is_alloc_failure(e):
                raise
            sample.error, sample.error_type = "out of memory scoring the faces", "OutOfMemoryError"
    heatmaps_of = None
    if getattr(fd, "heatmaps_available", False):  # a model with the features output: the top frames' maps
        def heatmaps_of(crops):
            return fd.classify_crops_with_heatmaps(crops, only_flagged=False)[1]
    return finish_row(sample, scores, fd.card, settings, heatmaps_of=heatmaps_of)


class Prefetcher:
    """Decodes the sampled frames of ``files`` in order in one background thread, ahead of face detection and
    classification in the caller's thread (FFmpeg, OpenCV and ONNX Runtime release the GIL): the decode of
    the next file overlaps the detection and scoring of this one. The queue holds at most ``depth`` frames,
    so memory stays flat however many files there are. Time the thread waits on a full queue is not
    counted against a file's decode deadline (:meth:`edge.media.VideoReader.extend_deadline`).

    ``for sample, frames in prefetcher.files(): sample_file(..., prefetched=(sample, frames))``; an
    exception of the decode (a broken file, a decode timeout) is raised by ``frames`` in the caller."""

    def __init__(self, files: Sequence[tuple[Path, str]], settings: ScreenSettings, depth: int = PREFETCH_FRAMES):
        import queue
        import threading

        self._files, self._settings = list(files), settings
        self._q: "queue.Queue" = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._reader = None
        self._thread = threading.Thread(target=self._run, name="ffd-decode", daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        import queue

        t0 = time.monotonic()
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
            except queue.Full:
                continue
            if self._reader is not None:  # waiting for the consumer is not decoding time
                self._reader.extend_deadline(time.monotonic() - t0)
            return True
        return False

    def _opened(self, reader) -> None:
        self._reader = reader

    def _run(self) -> None:
        for p, kind in self._files:
            s = FileSample(path=str(p), kind=kind)
            if not self._put(("file", s)):
                return
            try:
                for item in _iter_frames(str(p), kind, self._settings, s, on_open=self._opened):
                    if not self._put(("frame", item)):
                        return
            except BaseException as e:  # noqa: BLE001 - re-raised in the consumer, where sample_file sorts it
                self._reader = None
                if not self._put(("error", e)):
                    return
                continue
            self._reader = None
            if not self._put(("end", None)):
                return

    def _get(self):
        """The next item, or ``("stopped", None)`` once :meth:`close` was called (never blocks after it)."""
        import queue

        while not self._stop.is_set():
            try:
                return self._q.get(timeout=0.1)
            except queue.Empty:
                continue
        return "stopped", None

    def _frames(self, state: dict):
        while True:
            kind, item = self._get()
            if kind == "frame":
                yield item
                continue
            state["done"] = True
            if kind == "error":
                raise item
            return

    def files(self):
        """``(sample, frames)`` per file, in order; the frames the caller does not take (it stopped early on
        a detection error) are skipped before the next file."""
        for _ in self._files:
            kind, s = self._get()
            if kind != "file":
                return
            state = {"done": False}
            frames = self._frames(state)
            try:
                yield s, frames
            finally:
                frames.close()
                while not state["done"]:  # skip the rest of this file
                    kind, _item = self._get()
                    state["done"] = kind != "frame"

    def close(self) -> None:
        import queue

        self._stop.set()
        try:
            while True:
                self._q.get_nowait()
        except queue.Empty:
            pass
        self._thread.join(timeout=5)


def _worker_run(path: str, kind: str) -> dict:
    fd, settings = _W["fd"], _W["settings"]
    return score_sample(fd, sample_file(path, kind, settings, fd.detector, fd.spec), settings)


def _rows_local(todo: list[tuple[Path, str]], init_args: tuple, workers: int, card) -> Iterator[dict]:
    """Rows in completion order; ``workers`` processes (spawned) or in-process when 0; ``card`` for crash rows.

    In-process, a :class:`Prefetcher` thread decodes the next files while this thread detects and scores
    (two cores busy with ``-j 0``); with workers, each process reads its file as before."""
    if workers <= 0:
        _worker_init(*init_args)
        pre = Prefetcher(todo, init_args[4])
        try:
            fd, settings = _W["fd"], _W["settings"]
            for (p, kind), (s, frames) in zip(todo, pre.files()):
                yield score_sample(fd, sample_file(str(p), kind, settings, fd.detector, fd.spec,
                                                   prefetched=(s, frames)), settings)
        finally:
            pre.close()
            _W.pop("fd").close()
        return
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    from ..signals import stop_pool, submit

    pending = list(reversed(todo))
    attempts: dict[str, int] = {}
    while pending:
        pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_pool_worker_init,
                                   initargs=init_args)
        inflight: dict = {}
        broken = False
        try:
            while pending or inflight:
                while pending and len(inflight) < 2 * workers and not broken:
                    p, kind = pending.pop()
                    inflight[submit(pool, _worker_run, str(p), kind)] = (p, kind)
                if not inflight:
                    break
                done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                for fut in done:
                    p, kind = inflight.pop(fut)
                    try:
                        yield fut.result()
                    except BrokenProcessPool:
                        # a decoder crashed its process: retry the files that were in flight once
                        broken = True
                        attempts[str(p)] = attempts.get(str(p), 0) + 1
                        if attempts[str(p)] >= 2:
                            yield _crash_row(p, kind, card, init_args[4])
                        else:
                            pending.append((p, kind))
                if broken and not inflight:
                    break
        except BaseException:  # SIGTERM/Ctrl-C (edge.signals.Interrupted), or the consumer stopped: files in
            stop_pool(pool)    # flight are abandoned (the next run redoes them), not waited for
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _crash_row(p: Path, kind: str, card, settings: ScreenSettings) -> dict:
    s = FileSample(path=str(p), kind=kind, error="the decoder crashed the worker process on this file",
                   error_type="WorkerCrash")
    s.read_stat()
    return finish_row(s, None, card, settings)


# --- the command ------------------------------------------------------------------------------
def screen_archive(paths: Sequence[str | os.PathLike], model: str | os.PathLike, db: str | os.PathLike,
                   *, settings: ScreenSettings | None = None, workers: int = 0, backend: str = "auto",
                   detector_model: str | os.PathLike | None = None, retry_errors: bool = False,
                   report: str | os.PathLike | None = None, export: str | os.PathLike | None = None,
                   ray_address: str | None = None, progress: bool = True, runner_kw: dict | None = None,
                   limit: int | None = None, connect_timeout_s: float | None = None) -> dict:
    """Screen ``paths`` into the SQLite database ``db``; return a summary (counts, wall time, real-time factor).

    Finished files (same size and mtime, and a row made with the same settings fingerprint,
    :func:`run_fingerprint`) are skipped; error rows of a transient kind (a decode timeout, an
    allocation failure) are screened again. Errors of the run's own settings stop the run with an
    FfdError and write no row: a model or detector that fails on a file, and a first
    :data:`RUN_CHECK_FILES` files that all time out or run out of memory. Every file under
    ``paths`` is screened or counted in ``summary["ignored"]`` with its reason
    (``ignored_reasons``, ``ignored_files``: the first 100). ``ray_address``:
    ``"local"`` or ``"auto"`` or ``"HOST:PORT"`` runs on Ray (:mod:`edge.screen.ray_runner`).
    ``report`` / ``export`` write the HTML report and a CSV/JSON export at the end.
    ``limit``: screen at most that many files this run (the rest on the next run).
    ``connect_timeout_s``: the deadline to reach a Ray cluster (default ``FFD_CONNECT_TIMEOUT_S`` or 15 s).
    """
    from ..runtime import model_card
    from ..settings import check

    settings = settings or ScreenSettings()
    check("workers", workers, allow_none=False)
    check("limit", limit, 1, None, True)
    if ray_address is not None:
        from ..settings import connect_timeout_s as connect_timeout
        from .ray_runner import cluster_host_port

        connect_timeout_s = connect_timeout(connect_timeout_s)
        cluster_host_port(ray_address)  # a malformed --ray is refused before anything is opened
    from ..outputs import check_outputs

    check_outputs([*paths, model, detector_model], {"--db": db, "--report": report, "--export": export})
    from ..media import decode_timeout_s

    decode_timeout_s()  # a bad FFD_DECODE_TIMEOUT_S stops the run here, not as an error row per file
    from ..inputs import safe_text

    files, listing = discover_all(paths)
    # fail fast on a bad model, backend or option; its card keys the resume. Read without a runner: the
    # workers open theirs, and under auto on a GPU host opening one here would build the TensorRT engine first
    card = model_card(model, backend, **(runner_kw or {}))
    if card.spec.detector != "none":  # and on a detector model that is not a face detector
        from ..faces import FaceDetector

        FaceDetector.from_spec(card.spec, detector_model)
    model_id = card.model_id()
    fp, fp_what = run_fingerprint(model, card, detector_model, settings)
    rdb = ResultsDB(db)
    t0 = time.perf_counter()
    summary = {"files": len(files), "skipped": 0, "done": 0, "no_face": 0, "error": 0, "video_s": 0.0,
               "ignored": len(listing.skipped), "ignored_reasons": listing.counts(),
               "ignored_files": listing.describe(100), "model_id": model_id, "fingerprint": fp, "db": str(db)}
    try:
        rdb.describe_fingerprint(fp, fp_what)
        fin = rdb.finished(fp, retry_errors)
        todo = []
        for p, kind in files:
            try:
                st = p.stat()
            except OSError:
                st = None
            if st is not None and fin.get(safe_text(str(p))) == (st.st_size, st.st_mtime):
                summary["skipped"] += 1
            else:
                todo.append((p, kind))
        if limit is not None:
            todo = todo[:limit]
        runner_kw = dict(runner_kw or {})
        n_workers = max(workers, 0)
        if n_workers > 1 and str(model).endswith(".onnx"):  # one ORT thread per worker; dropped where TensorRT runs
            from ..runtime import Default

            runner_kw.setdefault("intra_op_threads", Default(1))
        init_args = (str(model), backend, None if detector_model is None else str(detector_model), runner_kw,
                     settings, *worker_threads(n_workers))
        if not todo:  # everything is finished: no worker, runner or detector is opened
            rows = iter(())
        elif ray_address is not None:
            from .ray_runner import rows_ray

            rows = rows_ray(todo, init_args, card.spec, ray_address, connect_timeout_s=connect_timeout_s)
        else:
            rows = _rows_local(todo, init_args, n_workers, card)
        bar = _progress(len(todo), progress)
        from ..signals import Interrupted, deferred

        held: list[dict] = []  # transient error rows held back until a file of this run gets a real result
        trusted = False

        def put(batch: list[dict]) -> None:
            with deferred():  # SIGTERM/Ctrl-C: a row is committed (and counted) whole or not at all
                for row in batch:
                    rdb.put(row)
                    summary[row["status"]] += 1
                    summary["video_s"] += row.get("duration_s") or 0.0
            if bar is not None:
                el = time.perf_counter() - t0
                bar.set_postfix_str(f"{summary['video_s'] / max(el, 1e-9):.1f} video-s/s", refresh=False)
                bar.update(len(batch))

        try:
            for row in rows:
                row["fingerprint"] = fp
                if not trusted and is_transient(row):  # maybe the run's timeout or memory, not the file
                    held.append(row)
                    if len(held) >= min(RUN_CHECK_FILES, len(todo)):
                        raise run_level_error(held)  # nothing written for them
                    continue
                trusted = True
                put([*held, row])
                held = []
            if held:  # fewer rows came than files were sent (cannot happen locally): keep them, retried next run
                put(held)
        except Interrupted as e:  # workers are stopped (_rows_local), every finished row is committed
            n = summary["done"] + summary["no_face"] + summary["error"]
            e.add_note(f"{n} of {len(todo)} files screened this run, saved in {db}; re-run the same command "
                       "to resume")
            raise
        finally:
            if bar is not None:
                bar.close()
            close = getattr(rows, "close", None)
            if close:
                close()
    finally:
        rdb.close()
    wall = time.perf_counter() - t0
    screened = summary["done"] + summary["no_face"] + summary["error"]
    summary.update(screened=screened, wall_s=round(wall, 3), video_s=round(summary["video_s"], 2),
                   files_per_s=round(screened / wall, 3) if wall > 0 else 0.0,
                   realtime_factor=round(summary["video_s"] / wall, 2) if wall > 0 else 0.0)
    if export:
        from .db import export as export_rows

        summary["exported"] = export_rows(db, export)
    if report:
        from .report import write_report

        summary["report"] = str(write_report(db, report))
    return summary




def run_level_error(rows: list[dict]) -> FfdError:
    """The run's own error when its first files all failed transiently (:func:`edge.media.transient_run_error`)."""
    from ..media import transient_run_error

    return transient_run_error({r.get("error_type") for r in rows}, len(rows))


def _progress(total: int, enabled: bool):
    if not enabled or total == 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="file", dynamic_ncols=True, mininterval=0.5)
