"""Video sources behind one URI factory (after jetson-utils' ``videoSource``).

``open_source(uri)`` understands:

* a video file (``clip.mp4``, ``file:///abs/clip.mp4``) or an image file;
* a folder: its images and videos in sorted order, one after the other;
* ``/dev/videoN``, ``v4l2:///dev/videoN`` or ``N``: a V4L2 camera;
* ``csi://N``: a Jetson CSI camera through GStreamer's ``nvarguscamerasrc`` (see :func:`csi_pipeline`);
* ``rtsp://``, ``rtsps://``, ``rtmp://``, ``http(s)://``: a network stream, reconnected with
  exponential back-off (``backoff_s``, doubling up to ``max_backoff_s``, ``max_retries`` times);
* any GStreamer pipeline string (contains ``!``; must end in ``appsink``).

``source.read(timeout_s)`` returns a :class:`Frame` or raises one of three *distinct* outcomes:
:class:`EndOfStream` (a file or folder is finished), :class:`SourceTimeout` (a live source gave
no frame within the timeout; call again) and :class:`SourceError` (cannot open, or a live
source is gone after all reconnect attempts). Live sources (cameras, streams, GStreamer) are
read by a capture thread into a small ring buffer that keeps the newest frames: a slow
consumer makes it *drop* old frames (counted in ``dropped``), never queue without bound.
Files and folders are read on demand, so nothing is dropped.

Opening a live source has one overall deadline, ``connect_timeout_s`` (default 15 s,
``FFD_CONNECT_TIMEOUT_S``, ``ffd detect --connect-timeout``): every attempt and back-off of the
first open fits in it, and then :class:`SourceError` says so. A server that accepts the
connection and never answers is covered too: FFmpeg opens get the time left as
``CAP_PROP_OPEN_TIMEOUT_MSEC`` and the deadline as ``CAP_PROP_READ_TIMEOUT_MSEC`` (a stream that
stops delivering for that long counts as dropped and is reconnected, each attempt bounded alike).
"""
from __future__ import annotations

import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

import numpy as np

from ..errors import BackendUnavailableError, InputError
from ..media import is_image, media_files, open_video, read_image
from ..settings import DEFAULT_CONNECT_TIMEOUT_S
from ..settings import connect_timeout_s as connect_timeout

STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp")


class EndOfStream(Exception):
    """A finite source (file, folder) has no more frames. Not an error."""


class SourceTimeout(Exception):
    """A live source delivered no frame within the timeout; it may still recover."""


class SourceError(InputError):
    """The source cannot be opened, or a live source is lost after every reconnect attempt."""


@dataclass
class Frame:
    """One decoded frame: ``index`` counts frames the source produced (dropped ones included)."""

    image: np.ndarray
    index: int
    timestamp_s: float  # media time for files, seconds since the source opened for live sources
    origin: str = ""  # the file a frame came from (folders); the URI otherwise


@dataclass(frozen=True)
class ParsedUri:
    """What :func:`parse_uri` made of a URI: ``kind`` and what OpenCV opens."""

    kind: str  # file | image | folder | v4l2 | csi | stream | gstreamer
    target: str | int
    live: bool
    api: str = "ffmpeg"  # ffmpeg | v4l2 | gstreamer | image | folder


def csi_pipeline(sensor_id: int = 0, width: int = 1280, height: int = 720, fps: int = 30,
                 flip_method: int = 0) -> str:
    """The GStreamer pipeline for a Jetson CSI camera (nvarguscamerasrc -> BGR appsink, newest frame only)."""
    return (f"nvarguscamerasrc sensor-id={sensor_id} ! "
            f"video/x-raw(memory:NVMM), width=(int){width}, height=(int){height}, framerate=(fraction){fps}/1 ! "
            f"nvvidconv flip-method={flip_method} ! video/x-raw, format=(string)BGRx ! "
            "videoconvert ! video/x-raw, format=(string)BGR ! appsink drop=true max-buffers=1 sync=false")


def parse_uri(uri: str | int | os.PathLike, width: int = 1280, height: int = 720, fps: int = 30) -> ParsedUri:
    """Classify a source URI (no I/O beyond ``stat``)."""
    if isinstance(uri, int):
        return ParsedUri("v4l2", uri, True, "v4l2")
    s = str(uri).strip()
    if "!" in s:
        return ParsedUri("gstreamer", s, True, "gstreamer")
    if s.isdigit():
        return ParsedUri("v4l2", int(s), True, "v4l2")
    u = urlparse(s)
    scheme = u.scheme.lower()
    if scheme == "csi":
        sensor = (u.netloc or u.path.strip("/") or "0")
        if not sensor.isdigit():
            raise SourceError(f"bad CSI camera URI {s!r}", fix="use csi://0, csi://1, ...")
        return ParsedUri("csi", csi_pipeline(int(sensor), width, height, fps), True, "gstreamer")
    if scheme == "v4l2":
        s = u.path or u.netloc
        scheme = ""
    if scheme in STREAM_SCHEMES:
        return ParsedUri("stream", s, True, "ffmpeg")
    if scheme == "file":
        s = u.path
    elif scheme and len(scheme) > 1:
        raise SourceError(f"unknown source scheme {scheme!r}",
                          fix="use a file, a folder, /dev/videoN, csi://N, rtsp://..., http://... "
                              "or a GStreamer pipeline")
    if s.startswith("/dev/video"):
        return ParsedUri("v4l2", s, True, "v4l2")
    p = Path(s)
    if p.is_dir():
        return ParsedUri("folder", str(p), False, "folder")
    if is_image(p):
        return ParsedUri("image", str(p), False, "image")
    return ParsedUri("file", str(p), False, "ffmpeg")


def backoff_delays(backoff_s: float, max_backoff_s: float, max_retries: int | None) -> Iterator[float]:
    """``backoff_s, 2*backoff_s, 4*backoff_s, ...`` capped at ``max_backoff_s``; ``max_retries`` of them
    (None: forever)."""
    k = 0
    while max_retries is None or k < max_retries:
        yield min(max_backoff_s, backoff_s * (2 ** k))
        k += 1


def _capture(parsed: ParsedUri, open_timeout_s: float | None = None, read_timeout_s: float | None = None):
    """Open an OpenCV capture for ``parsed``; returns it or None when it does not open. FFmpeg opens
    (streams) give up after ``open_timeout_s`` and a read after ``read_timeout_s`` (OpenCV's own
    default is 30 s each)."""
    import cv2

    if parsed.api == "gstreamer":
        if "GStreamer:                   YES" not in cv2.getBuildInformation():
            raise BackendUnavailableError(
                "this OpenCV build has no GStreamer support (needed for csi:// and pipeline strings)",
                fix="on Jetson use the JetPack OpenCV (python3-opencv) instead of opencv-python-headless")
        cap = cv2.VideoCapture(parsed.target, cv2.CAP_GSTREAMER)
    elif parsed.api == "v4l2":
        cap = cv2.VideoCapture(parsed.target, cv2.CAP_V4L2)
    else:
        params = []
        if open_timeout_s is not None:
            params += [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, max(1, int(open_timeout_s * 1000))]
        if read_timeout_s is not None:
            params += [cv2.CAP_PROP_READ_TIMEOUT_MSEC, max(1, int(read_timeout_s * 1000))]
        cap = cv2.VideoCapture(str(parsed.target), cv2.CAP_FFMPEG, params)
    if cap.isOpened():
        return cap
    cap.release()
    return None


class Source:
    """Common interface: ``read(timeout_s) -> Frame``; iterate for frames until the end; ``close()``."""

    uri: str = ""
    live: bool = False
    fps: float = 0.0  # nominal frame rate (0: unknown)
    size: tuple[int, int] = (0, 0)  # (width, height), (0, 0) before the first frame when unknown
    dropped: int = 0  # frames discarded because the consumer was slower than a live source
    reconnects: int = 0

    def read(self, timeout_s: float | None = None) -> Frame:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __iter__(self) -> Iterator[Frame]:
        """Frames until :class:`EndOfStream`; timeouts of live sources are waited out."""
        while True:
            try:
                yield self.read(1.0)
            except EndOfStream:
                return
            except SourceTimeout:
                continue

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class FileSource(Source):
    """A video file (every frame, in order) or a single image (one frame)."""

    def __init__(self, path: str | os.PathLike, image: bool = False):
        self.uri = str(path)
        self.live = False
        self._i = 0
        self._image = None
        self._cap = None
        if image:
            try:
                self._image = read_image(path)
            except InputError as e:
                raise SourceError(e.message, path=path, fix=e.fix) from e
            self.size = (self._image.shape[1], self._image.shape[0])
            return
        try:
            self._cap, info = open_video(path)  # checks existence, size and that FFmpeg opens it
        except InputError as e:
            raise SourceError(f"cannot read video: {e.message}", path=path, fix=e.fix) from e
        self.fps, self.size, self.frame_count = info.fps, (info.width, info.height), info.frame_count

    def read(self, timeout_s: float | None = None) -> Frame:
        if self._image is not None:
            if self._i:
                raise EndOfStream(self.uri)
            self._i = 1
            return Frame(self._image, 0, 0.0, self.uri)
        if self._cap is None:
            raise EndOfStream(self.uri)
        ok, img = self._cap.read()
        if not ok or img is None or img.size == 0:
            n = self._i
            self.close()
            if n == 0:
                raise SourceError("the video has no decodable frame (corrupt or truncated)", path=self.uri,
                                  fix="re-encode it (ffmpeg -i IN -c:v libx264 OUT.mp4) or remove it")
            raise EndOfStream(self.uri)
        i = self._i
        self._i += 1
        return Frame(img, i, i / self.fps if self.fps else 0.0, self.uri)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class FolderSource(Source):
    """Images and videos of a folder (recursive, sorted), played one after the other.

    A file that cannot be read is skipped and recorded in ``errors`` as ``(path, message)``.
    """

    def __init__(self, folder: str | os.PathLike):
        self.uri = str(folder)
        self.files = media_files(folder)
        if not self.files:
            raise SourceError("the folder holds no image or video", path=folder,
                              fix="put media files in it (images or videos such as .mp4)")
        self.errors: list[tuple[str, str]] = []
        self._k = 0
        self._cur: FileSource | None = None
        self._i = 0

    def read(self, timeout_s: float | None = None) -> Frame:
        while True:
            if self._cur is None:
                if self._k >= len(self.files):
                    raise EndOfStream(self.uri)
                f = self.files[self._k]
                self._k += 1
                try:
                    self._cur = FileSource(f, image=is_image(f))
                except SourceError as e:
                    self.errors.append((str(f), e.message))
                    continue
                self.fps, self.size = self._cur.fps, self._cur.size
            try:
                fr = self._cur.read()
            except EndOfStream:
                self._cur = None
                continue
            except SourceError as e:
                self.errors.append((str(self._cur.uri), e.message))
                self._cur = None
                continue
            fr.index, self._i = self._i, self._i + 1
            return fr

    def close(self) -> None:
        if self._cur is not None:
            self._cur.close()
            self._cur = None


class LiveSource(Source):
    """A camera, network stream or GStreamer pipeline read by a capture thread.

    The thread keeps the newest ``buffer`` frames (older ones are dropped and counted). When
    a read fails (a stream drops, a camera is unplugged) it reopens the source after
    ``backoff_s``, ``2*backoff_s``, ... (capped at ``max_backoff_s``) up to ``max_retries``
    times (None: forever); after that ``read`` raises :class:`SourceError`. ``max_retries=0``
    makes the first failure final. A stream that ends (EOF) is treated as dropped.
    ``connect_timeout_s``: the first open (all its attempts and back-offs) fits in it, and so does
    each single attempt of a reconnect (see the module docstring).
    """

    def __init__(self, parsed: ParsedUri, uri: str, buffer: int = 2, backoff_s: float = 0.5,
                 max_backoff_s: float = 8.0, max_retries: int | None = 5,
                 connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S):
        self.parsed, self.uri, self.live = parsed, uri, True
        self.backoff_s, self.max_backoff_s, self.max_retries = backoff_s, max_backoff_s, max_retries
        self.connect_timeout_s = connect_timeout_s
        self._buf: deque[Frame] = deque(maxlen=max(1, buffer))
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._error: SourceError | None = None
        self._n = 0
        self._t0 = time.monotonic()
        self.retry_log: list[float] = []  # back-off delays actually waited
        cap = self._open_first()
        self._thread = threading.Thread(target=self._loop, args=(cap,), name=f"capture:{uri}", daemon=True)
        self._thread.start()

    def _open(self, deadline: float | None = None):
        """One attempt, bounded by ``deadline`` (monotonic) or else by ``connect_timeout_s``."""
        left = self.connect_timeout_s if deadline is None else max(0.001, deadline - time.monotonic())
        return _capture(self.parsed, open_timeout_s=left, read_timeout_s=self.connect_timeout_s)

    def _open_first(self):
        """Open synchronously (retrying with back-off, all within ``connect_timeout_s``) so that a wrong or
        silent URI fails in ``open_source``."""
        t0 = time.monotonic()
        deadline = t0 + self.connect_timeout_s
        cap = self._open(deadline)
        for delay in backoff_delays(self.backoff_s, self.max_backoff_s, self.max_retries):
            left = deadline - time.monotonic()
            if cap is not None or left <= 0:
                break
            time.sleep(min(delay, left))
            self.retry_log.append(delay)
            if time.monotonic() >= deadline:
                break
            cap = self._open(deadline)
        if cap is None:
            tries = len(self.retry_log) + 1
            raise SourceError(f"cannot open live source {self.parsed.kind}: no answer within "
                              f"{time.monotonic() - t0:.1f} s ({tries} attempt{'s' * (tries > 1)}, "
                              f"connect timeout {self.connect_timeout_s:g} s)", path=self.uri,
                              fix="check the camera/stream is connected and the URI is right "
                                  "(--connect-timeout S or FFD_CONNECT_TIMEOUT_S waits longer)")
        self._set_props(cap)
        return cap

    def _set_props(self, cap) -> None:
        import cv2

        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and np.isfinite(fps) and 0 < fps < 1000 else self.fps
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if w and h:
            self.size = (w, h)

    def _loop(self, cap) -> None:
        delays = None  # the back-off schedule of the current outage; a frame resets it
        try:
            while not self._stop.is_set():
                if cap is None:
                    delays = delays or backoff_delays(self.backoff_s, self.max_backoff_s, self.max_retries)
                    delay = next(delays, None)
                    if delay is None:
                        raise SourceError(f"live source {self.parsed.kind} lost; {self.max_retries} reconnect attempts "
                                          "failed", path=self.uri,
                                          fix="check the camera/stream is connected and the URI is right")
                    if self._stop.wait(delay):
                        break
                    self.retry_log.append(delay)
                    cap = self._open()
                    if cap is not None:
                        self.reconnects += 1
                        self._set_props(cap)
                    continue
                ok, img = cap.read()
                if not ok or img is None:  # dropped stream, unplugged camera, or a stream that ended
                    cap.release()
                    cap = None
                    continue
                delays = None
                fr = Frame(img, self._n, time.monotonic() - self._t0, self.uri)
                self._n += 1
                with self._cond:
                    if len(self._buf) == self._buf.maxlen:
                        self.dropped += 1
                    self._buf.append(fr)
                    self._cond.notify()
        except SourceError as e:
            with self._cond:
                self._error = e
        finally:
            if cap is not None:
                cap.release()
            with self._cond:
                self._cond.notify_all()

    def read(self, timeout_s: float | None = None) -> Frame:
        with self._cond:
            if not self._cond.wait_for(lambda: self._buf or self._error or not self._thread.is_alive(), timeout_s):
                raise SourceTimeout(f"no frame from {self.uri} within {timeout_s:.3g} s")
            if self._buf:
                return self._buf.popleft()
            if self._error is not None:
                raise self._error
            raise EndOfStream(self.uri)  # closed

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)


def open_source(uri: str | int | os.PathLike, *, buffer: int = 2, backoff_s: float = 0.5,
                max_backoff_s: float = 8.0, max_retries: int | None = 5, width: int = 1280, height: int = 720,
                fps: int = 30, connect_timeout_s: float | None = None) -> Source:
    """Open any source by URI; see the module docstring. ``width``/``height``/``fps`` apply to ``csi://``;
    ``connect_timeout_s`` (live sources; default ``FFD_CONNECT_TIMEOUT_S`` or 15 s) bounds the open."""
    parsed = parse_uri(uri, width, height, fps)
    if parsed.kind == "folder":
        return FolderSource(parsed.target)
    if parsed.kind in ("file", "image"):
        return FileSource(parsed.target, image=parsed.kind == "image")
    return LiveSource(parsed, str(uri), buffer=buffer, backoff_s=backoff_s, max_backoff_s=max_backoff_s,
                      max_retries=max_retries, connect_timeout_s=connect_timeout(connect_timeout_s))
