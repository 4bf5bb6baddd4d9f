"""The pipelined video/camera loop behind ``ffd detect SOURCE`` for videos, cameras and streams.

Four stages run concurrently and talk through *bounded* queues, so the slowest stage sets
the rate:

``decode`` (thread: ``source.read``) → ``detect`` (thread: face detection + crops) →
``classify`` (thread: batches the crops of every frame waiting, one inference per batch, then
IoU tracking and per-track score smoothing, :mod:`edge.stream.tracking`) → ``output`` (the caller's
thread: overlay, annotated video, JSON lines). The detect and classify stages are the
:class:`~edge.forgery.ForgeryDetector`'s own stage methods (``detect_faces``/``crop_faces``,
``prepare``, ``submit``, ``face_results``): crops, normalising and results are made as in
``ForgeryDetector.process``, never a second way here.

OpenCV and ONNX Runtime release the GIL, so threads overlap on several cores. For a live
source (camera, stream, or a file with ``live=True``) the decode stage never waits: when the
detect queue is full it drops the oldest frame (counted in ``dropped``), so a slow classifier
costs frames, never memory or latency. For files nothing is dropped; decode simply waits.

:class:`Pipeline` is the embeddable form (iterate it for ``(frame, [FaceResult])``); it fills a
:class:`DetectStats` (achieved fps, per-stage ms, drops, RSS samples). The outputs (overlay,
annotated video, window) are :mod:`edge.stream.sinks`; ``ffd detect`` itself is :mod:`edge.detect`.
"""
from __future__ import annotations

import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from ..errors import ConfigError
from ..tools.bench import current_rss_mb, peak_rss_mb, percentiles
from .sources import EndOfStream, Frame, Source, SourceError, SourceTimeout

STAGES = ("decode", "detect", "preprocess", "infer", "output")
_END = object()


STAGE_WINDOW = 10_000  # per-stage timing samples kept: a camera runs for days, memory must not grow
RSS_WINDOW = 1_000  # RSS samples kept (one every ``rss_every`` frames)


@dataclass
class DetectStats:
    """What a run did; ``end`` is ``eos`` | ``timeout`` | ``error`` | ``max_frames`` | ``stopped``.

    Stage times and RSS samples are kept in bounded windows (the most recent :data:`STAGE_WINDOW`
    frames, :data:`RSS_WINDOW` samples), so a long live run does not grow; counters cover the whole run.
    """

    source: str = ""
    frames_read: int = 0
    frames_processed: int = 0
    dropped: int = 0
    faces: int = 0
    tracks: int = 0
    wall_s: float = 0.0
    end: str = ""
    error: str | None = None
    stage_ms: dict = field(default_factory=lambda: {s: deque(maxlen=STAGE_WINDOW) for s in STAGES})
    rss_mb: deque = field(default_factory=lambda: deque(maxlen=RSS_WINDOW))  # (frames processed, RSS MiB)

    @property
    def fps(self) -> float:
        return self.frames_processed / self.wall_s if self.wall_s > 0 else 0.0

    def stage_summary(self) -> dict[str, dict]:
        return {s: percentiles(v) for s, v in self.stage_ms.items()}

    def limiting_stage(self) -> str:
        means = {s: float(np.mean(v)) for s, v in self.stage_ms.items() if v}
        return max(means, key=means.get) if means else ""

    def to_dict(self) -> dict:
        st = self.stage_summary()
        return {"source": self.source, "frames_read": self.frames_read, "frames_processed": self.frames_processed,
                "dropped": self.dropped, "faces": self.faces, "tracks": self.tracks,
                "wall_s": round(self.wall_s, 3), "fps": round(self.fps, 2), "end": self.end, "error": self.error,
                "stage_ms": {s: {k: round(v, 3) for k, v in d.items()} for s, d in st.items()},
                "limiting_stage": self.limiting_stage(), "peak_rss_mb": round(peak_rss_mb(), 1),
                "rss_mb": [(n, round(r, 1)) for n, r in self.rss_mb]}

    def summary(self) -> str:
        st = self.stage_summary()
        parts = " ".join(f"{s}={d['mean']:.1f}" for s, d in st.items() if d.get("n"))
        return (f"{self.frames_processed} frames in {self.wall_s:.1f} s = {self.fps:.1f} fps; "
                f"{self.faces} faces, {self.tracks} tracks, {self.dropped} dropped; ms/frame: {parts}; "
                f"slowest stage: {self.limiting_stage()}; end: {self.end}"
                + (f" ({self.error})" if self.error else ""))


class Pipeline:
    """Iterate for ``(Frame, list[FaceResult])`` in frame order (faces carry ``track_id`` and smoothed scores).

    ``detector``: a :class:`edge.forgery.ForgeryDetector` (owned by this pipeline while it runs;
    not shared with other threads). ``live``: drop frames when behind (default: the source's
    kind). ``pace_fps``: read a file no faster than this (simulates a camera). ``every``: detect
    on every k-th frame only (the others are decoded and skipped). ``smooth``: EMA weight of a
    new score (1: no smoothing). ``stall_timeout_s``: end a live source silent that long.
    """

    def __init__(self, source: Source, detector, *, batch_size: int = 16, queue_size: int = 4,
                 live: bool | None = None, pace_fps: float | None = None, every: int = 1,
                 max_frames: int | None = None, smooth: float = 0.3, iou: float = 0.3,
                 stall_timeout_s: float = 10.0, rss_every: int = 100):
        from .tracking import IouTracker

        if batch_size < 1 or queue_size < 1 or every < 1:
            raise ConfigError("batch_size, queue_size and every must be >= 1")
        from ..settings import RANGES, check

        batch_size, every = check("batch_size", batch_size, allow_none=False), check("every", every, allow_none=False)
        queue_size = check("queue_size", queue_size, 1, 1024, True, allow_none=False)
        max_frames = check("max_frames", max_frames)
        pace_fps = check("pace_fps", pace_fps, 1e-3, 1e6)
        stall_timeout_s = check("stall_timeout_s", stall_timeout_s, *RANGES["timeout_s"], allow_none=False)
        self.source, self.fd = source, detector
        self.batch_size, self.every, self.max_frames = batch_size, every, max_frames
        self.live = source.live if live is None else live
        self.pace_fps, self.stall_timeout_s, self.rss_every = pace_fps, stall_timeout_s, rss_every
        self.tracker = IouTracker(iou_threshold=iou, alpha=smooth, max_age=max(5, 15 // every))
        self._q_dec: queue.Queue = queue.Queue(queue_size)
        self._q_det: queue.Queue = queue.Queue(queue_size)
        self._q_out: queue.Queue = queue.Queue(queue_size)
        self._stop = threading.Event()
        self._failure: BaseException | None = None
        self.stats = DetectStats(source=source.uri)
        _ = detector.detector  # build the face detector now: a missing model fails before threads start

    # --- queue helpers ---------------------------------------------------------------------
    def _put(self, q: queue.Queue, item) -> bool:
        while not self._stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _put_latest(self, q: queue.Queue, item) -> None:
        """Live sources: never wait; when the queue is full, drop its oldest frame."""
        while True:
            try:
                q.put_nowait(item)
                return
            except queue.Full:
                try:
                    q.get_nowait()
                    self.stats.dropped += 1
                except queue.Empty:
                    pass

    def _get(self, q: queue.Queue):
        while True:
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                if self._stop.is_set():
                    return _END

    def _guard(self, fn, q_next: queue.Queue):
        def run():
            try:
                fn()
            except Exception as e:  # an internal failure of one stage: stop all, re-raised by the consumer
                self._failure = e
                self._stop.set()
            finally:
                self._put_end(q_next)
        return run

    def _put_end(self, q: queue.Queue) -> None:
        while True:  # the end marker must get through even when stopping
            try:
                q.put(_END, timeout=0.1)
                return
            except queue.Full:
                if self._stop.is_set():
                    try:
                        q.get_nowait()
                    except queue.Empty:
                        pass

    # --- stages ----------------------------------------------------------------------------
    def _decode(self) -> None:
        st, src = self.stats, self.source
        last_frame_t = time.monotonic()
        t_start = time.monotonic()
        while not self._stop.is_set():
            t0 = time.perf_counter()
            try:
                fr = src.read(0.5)
            except SourceTimeout:
                if time.monotonic() - last_frame_t > self.stall_timeout_s:
                    st.end = "timeout"
                    st.error = f"no frame for {self.stall_timeout_s:g} s"
                    return
                continue
            except EndOfStream:
                st.end = "eos"
                return
            except SourceError as e:
                st.end, st.error = "error", str(e)
                return
            last_frame_t = time.monotonic()
            st.stage_ms["decode"].append((time.perf_counter() - t0) * 1e3)
            st.frames_read += 1
            if fr.index % self.every == 0:
                if self.pace_fps:
                    delay = t_start + st.frames_read / self.pace_fps - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                if self.live:
                    self._put_latest(self._q_dec, fr)
                elif not self._put(self._q_dec, fr):
                    return
            if self.max_frames and st.frames_read >= self.max_frames:
                st.end = "max_frames"
                return
        st.end = st.end or "stopped"

    def _detect(self) -> None:
        ms = self.stats.stage_ms
        while True:
            fr = self._get(self._q_dec)
            if fr is _END:
                return
            t0 = time.perf_counter()
            dets = self.fd.detect_faces(fr.image)
            t1 = time.perf_counter()
            crops = self.fd.crop_faces(fr.image, dets)
            t2 = time.perf_counter()
            ms["detect"].append((t1 - t0) * 1e3)
            if not self._put(self._q_det, (fr, dets, crops, (t2 - t1) * 1e3)):
                return

    def _classify(self) -> None:
        """Batch the waiting frames' crops, normalise, infer; emit in frame order.

        Double buffering: after batch n is submitted (``runner.infer_async``), if more frames are
        already waiting, batch n+1 is gathered, normalised and submitted before n's scores are
        collected, so that host work overlaps the GPU's (TensorRT; ONNX Runtime runs at submit).
        With nothing waiting, n is collected at once: overlap never delays a result.
        """
        pending = None  # the submitted batch whose scores are not collected yet
        while True:
            if pending is None:
                item = self._get(self._q_det)
            else:
                try:
                    item = self._q_det.get_nowait()
                except queue.Empty:  # nothing to overlap with: finish the pending batch now
                    if not self._emit(*pending):
                        return
                    pending = None
                    continue
            if item is _END:
                break
            items, end = self._gather(item)
            crops = [c for it in items for c in it[2]]
            t0 = time.perf_counter()
            batch = self.fd.prepare(crops)
            t1 = time.perf_counter()
            job = self.fd.submit(batch)
            submitted = (items, job, (t1 - t0) * 1e3, (time.perf_counter() - t1) * 1e3)
            if pending is not None and not self._emit(*pending):  # batch n, while n+1 runs
                return
            pending = submitted
            if end:
                break
        if pending is not None:
            self._emit(*pending)

    def _gather(self, first) -> tuple[list, bool]:
        """``first`` and whatever else is already waiting, up to ``batch_size`` crops; True when the end came."""
        items, n_crops = [first], len(first[2])
        while n_crops < self.batch_size:
            try:
                nxt = self._q_det.get_nowait()
            except queue.Empty:
                break
            if nxt is _END:
                return items, True
            items.append(nxt)
            n_crops += len(nxt[2])
        return items, False

    def _emit(self, items: list, job, norm_ms: float, submit_ms: float) -> bool:
        """Collect a submitted batch's scores, track and smooth them, and pass each frame on."""
        t0 = time.perf_counter()
        scores = job.result()
        infer_ms = submit_ms + (time.perf_counter() - t0) * 1e3  # time this stage spent on inference
        ms = self.stats.stage_ms
        k = 0
        for fr, dets, _, crop_ms in items:
            s = scores[k:k + len(dets)]
            k += len(dets)
            ms["preprocess"].append(crop_ms + norm_ms / len(items))
            ms["infer"].append(infer_ms / len(items))
            tracked = self.tracker.update(fr.index, [d.box for d in dets], s)
            faces = self.fd.face_results(dets, s, tracked)
            if not self._put(self._q_out, (fr, faces)):
                return False
        return True

    # --- the consumer ----------------------------------------------------------------------
    def __iter__(self) -> Iterator[tuple[Frame, list]]:
        st = self.stats
        threads = [threading.Thread(target=self._guard(self._decode, self._q_dec), name="ffd-decode", daemon=True),
                   threading.Thread(target=self._guard(self._detect, self._q_det), name="ffd-detect", daemon=True),
                   threading.Thread(target=self._guard(self._classify, self._q_out), name="ffd-classify", daemon=True)]
        t_start = time.perf_counter()
        for t in threads:
            t.start()
        ids: set[int] = set()
        try:
            while True:
                item = self._get(self._q_out)
                if item is _END:
                    break
                fr, faces = item
                st.frames_processed += 1
                st.faces += len(faces)
                ids.update(f.track_id for f in faces)
                st.tracks = len(ids)
                if self.rss_every and st.frames_processed % self.rss_every == 0:
                    st.rss_mb.append((st.frames_processed, current_rss_mb()))
                t0 = time.perf_counter()
                yield fr, faces
                st.stage_ms["output"].append((time.perf_counter() - t0) * 1e3)
                st.wall_s = time.perf_counter() - t_start
        finally:
            self._stop.set()
            for q in (self._q_dec, self._q_det, self._q_out):  # unblock producers
                while True:
                    try:
                        q.get_nowait()
                    except queue.Empty:
                        break
            for t in threads:
                t.join(timeout=10.0)
            st.wall_s = time.perf_counter() - t_start
            st.dropped += getattr(self.source, "dropped", 0)
            st.end = st.end or "stopped"
        if self._failure is not None:
            raise self._failure

