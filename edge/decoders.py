"""Video decoding back-ends behind :mod:`edge.media` (torch-free; each heavy import lazy).

:class:`~edge.media.VideoReader`, ``open_video``, ``probe_video`` and ``iter_video_frames`` read through one
of these *captures*, duck-typed on the part of ``cv2.VideoCapture`` they use (``isOpened``, ``grab``,
``retrieve``, ``read``, ``set(CAP_PROP_POS_FRAMES)``, ``get``, ``release``), so the sampling logic, the
decode timeout and the truncated / over-claimed / broken-index fallbacks are one code path for all:

* ``pyav`` (default where the ``av`` extra is installed): FFmpeg through PyAV with threaded decoding
  (``thread_type = "AUTO"``); a frame is converted to a BGR ndarray only when it is sampled
  (``grab()`` decodes, ``retrieve()`` converts); its timestamp is ``(pts - start) * time_base``
  (``frame_time``), exact also for variable frame rates; keyframes alone are decoded with
  ``skip_frame = "NONKEY"`` (:meth:`PyAVCapture.keyframes`); a sequential pass for sparse samples lets the
  decoder skip the non-reference frames it does not need (``skip_frame = "NONREF"`` per packet,
  :meth:`PyAVCapture.skip_unwanted`): no other frame depends on them, so the samples stay exact.
* ``opencv``: OpenCV's FFmpeg back-end (the fallback; always installed).
* ``gstreamer``: hardware decoding on Jetson through OpenCV's GStreamer back-end and ``nvv4l2decoder``
  (when ``cv2.getBuildInformation()`` shows GStreamer and the element exists).
* ``nvdec``: NVDEC on desktop NVIDIA GPUs through PyNvVideoCodec (the ``nvdec`` extra), ``SimpleDecoder``.

:func:`select_decoder` picks one: ``--decoder`` / ``FFD_DECODER`` (``auto``, ``pyav``, ``opencv``,
``gstreamer``, ``nvdec``), and says why (``ffd env`` prints it). ``auto``: ``gstreamer`` on a Jetson
where it is usable, ``nvdec`` where PyNvVideoCodec and an NVIDIA GPU are, else ``pyav``, else ``opencv``.
A hardware decoder that cannot open a file hands it to the software one (:func:`edge.media.open_video`).
"""
from __future__ import annotations

import bisect
import functools
import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from .errors import BackendUnavailableError, ConfigError, MissingDependencyError

from .settings import ENV_CHOICES, env_choice

DECODERS = ENV_CHOICES["FFD_DECODER"]  # auto first
SOFTWARE = ("pyav", "opencv")
JETSON_RELEASE = Path("/etc/nv_tegra_release")
MAX_BAD_PACKETS = 64  # consecutive packets that fail to decode before the stream is taken to end there


# --- selection ------------------------------------------------------------------------------------------
def have_av() -> bool:
    """Whether PyAV imports (an ImportError, or a blocked import, is 'no')."""
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def gstreamer_unusable_reason() -> str | None:
    """None when OpenCV was built with GStreamer and the ``nvv4l2decoder`` element exists, else why not."""
    import cv2

    info = cv2.getBuildInformation()
    line = next((x for x in info.splitlines() if x.strip().startswith("GStreamer:")), "")
    if "YES" not in line:
        return "OpenCV was built without GStreamer (cv2.getBuildInformation(): GStreamer: NO)"
    inspect = shutil.which("gst-inspect-1.0")
    if inspect is None:
        return "gst-inspect-1.0 not found: cannot check for the nvv4l2decoder element"
    try:
        r = subprocess.run([inspect, "nvv4l2decoder"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"gst-inspect-1.0 nvv4l2decoder failed: {e}"
    return None if r.returncode == 0 else "GStreamer has no nvv4l2decoder element (not a Jetson / no L4T plugins)"


def nvdec_unusable_reason() -> str | None:
    """None when PyNvVideoCodec is installed and an NVIDIA GPU device is visible, else why not."""
    if importlib.util.find_spec("PyNvVideoCodec") is None:
        return "PyNvVideoCodec is not installed (pip install 'ffd-edge[nvdec]')"
    if not (Path("/dev/nvidia0").exists() or Path("/dev/dxg").exists()):
        return "no NVIDIA GPU device (/dev/nvidia0)"
    return None


@functools.lru_cache(maxsize=16)
def _select(name: str, source: str, jetson: bool) -> tuple[str, str]:
    if name not in DECODERS:
        raise ConfigError(f"{source} must be one of {', '.join(DECODERS)}, got {name!r}",
                          fix=f"use {source} auto (or pyav, opencv, gstreamer, nvdec)")
    if name == "auto":
        if jetson and gstreamer_unusable_reason() is None:
            return "gstreamer", "auto: a Jetson with OpenCV built with GStreamer and nvv4l2decoder (hardware decode)"
        if nvdec_unusable_reason() is None:
            return "nvdec", "auto: PyNvVideoCodec and an NVIDIA GPU (NVDEC hardware decode)"
        if have_av():
            import av

            return "pyav", f"auto: PyAV {av.__version__} is installed (threaded FFmpeg decoding)"
        return "opencv", "auto: PyAV is not installed (pip install 'ffd-edge[av]'), OpenCV's FFmpeg back-end"
    why = f"chosen by {source}"
    if name == "pyav" and not have_av():
        raise MissingDependencyError("av", "av", f"{source} pyav")
    if name == "gstreamer" and (reason := gstreamer_unusable_reason()):
        raise BackendUnavailableError(f"{source} gstreamer is not usable here: {reason}",
                                      fix=f"use {source} auto (or pyav/opencv) on this machine")
    if name == "nvdec" and (reason := nvdec_unusable_reason()):
        raise BackendUnavailableError(f"{source} nvdec is not usable here: {reason}",
                                      fix=f"use {source} auto (or pyav/opencv), or pip install 'ffd-edge[nvdec]'")
    return name, why


def select_decoder(requested: str | None = None) -> tuple[str, str]:
    """``(decoder, why)``: ``requested`` (``--decoder``), else ``FFD_DECODER``, else ``auto``.

    An unknown name is a ConfigError naming the option or variable; a decoder asked for by name that is not
    usable here (``pyav`` without PyAV, ``gstreamer`` without it, ``nvdec`` without PyNvVideoCodec or a GPU)
    is a :class:`~edge.errors.BackendUnavailableError` saying why, never a silent switch."""
    if requested:
        name, source = str(requested).strip().lower(), "--decoder"
    elif os.environ.get("FFD_DECODER", "").strip():
        name, source = env_choice("FFD_DECODER"), "FFD_DECODER"
    else:
        name, source = "auto", "auto"
    return _select(name, source, JETSON_RELEASE.is_file())


def software_decoder() -> str:
    """The software decoder a hardware one hands a file it cannot open to."""
    return "pyav" if have_av() else "opencv"


# --- keyframes from the container (demuxed, not decoded) ------------------------------------------------
def keyframe_times(path: str | os.PathLike) -> list[tuple[int, float]] | None:
    """``[(frame index, timestamp_s)]`` of the keyframes (see :func:`keyframe_table`)."""
    table = keyframe_table(path)
    return None if table is None else [(i, t) for i, t, _ in table]


def _demux_stamps(path: str | os.PathLike):
    """One demux pass (no decode) over the first video stream: ``(stamps, keyframe stamps, time_base,
    start, complete)`` in packet order, a packet's stamp its pts (else dts, else its rank); ``complete``:
    every packet had a pts of its own. None without PyAV or when the file does not open."""
    try:
        import av
    except ImportError:
        return None
    try:
        with av.open(str(path)) as c:
            s = next((x for x in c.streams if x.type == "video"), None)
            if s is None:
                return None
            stamps, keys, complete = [], [], True
            try:
                for pkt in c.demux(s):
                    if pkt.size == 0:
                        continue
                    ts = pkt.pts
                    if ts is None:
                        complete = False
                        ts = pkt.dts if pkt.dts is not None else len(stamps)
                    stamps.append(ts)
                    if pkt.is_keyframe:
                        keys.append(ts)
            except av.error.FFmpegError:  # a truncated or corrupt tail: the packets before it count
                pass
            tb = float(s.time_base) if s.time_base else 0.0
            first = s.start_time
    except Exception:  # noqa: BLE001 - a file PyAV cannot open: nothing known
        return None
    return stamps, keys, tb, first, complete


def keyframe_table(path: str | os.PathLike) -> list[tuple[int, float, int]] | None:
    """``[(frame index, timestamp_s, pts)]`` of the keyframes of the video at ``path``, exact: the index is the rank
    of the keyframe's presentation timestamp among those of all the stream's packets (B-frames and variable
    frame rates included), the time its pts in seconds from the stream's start. Demuxed only (one cheap pass,
    no decode); None without PyAV or when the file does not demux."""
    got = _demux_stamps(path)
    if got is None:
        return None
    stamps, keys, tb, first, _ = got
    stamps.sort()
    start = first if first is not None else (stamps[0] if stamps else 0)
    out = {}
    for ts in keys:
        out[bisect.bisect_left(stamps, ts)] = (max(0.0, (ts - start) * tb), ts)
    return [(i, t, ts) for i, (t, ts) in sorted(out.items())]


def packet_stamps(path: str | os.PathLike) -> list[int] | None:
    """The presentation timestamps of all the video packets of ``path`` in display order: ``stamps[i]`` is
    frame ``i``'s pts. Demuxed only; None without PyAV, when the file does not demux, or when a packet lacks
    a pts or two share one (the ranks would not be exact)."""
    got = _demux_stamps(path)
    if got is None or not got[4] or not got[0]:
        return None
    stamps = sorted(got[0])
    if any(a == b for a, b in zip(stamps, stamps[1:])):
        return None
    return stamps


# --- PyAV -----------------------------------------------------------------------------------------------
def _rotate(img: np.ndarray, degrees: float) -> np.ndarray:
    """Apply a display matrix rotation (PyAV: degrees counter-clockwise) as OpenCV's auto-orientation does."""
    import cv2

    r = int(round(degrees)) % 360
    if r == 270:
        return cv2.rotate(img, cv2.ROTATE_90_CLOCKWISE)
    if r == 90:
        return cv2.rotate(img, cv2.ROTATE_90_COUNTERCLOCKWISE)
    if r == 180:
        return cv2.rotate(img, cv2.ROTATE_180)
    return img


class PyAVCapture:
    """A video file through PyAV, with the part of ``cv2.VideoCapture``'s interface :mod:`edge.media` uses.

    ``grab()`` decodes the next frame (threaded) without converting it; ``retrieve()`` converts it to
    BGR (swscale to ``bgr24`` through one reformatter per capture; the display rotation applied as OpenCV
    does); ``frame_time`` is the grabbed frame's timestamp from pts/time_base. A packet that fails to decode
    is skipped, as FFmpeg does in OpenCV; an unreadable tail ends the stream there (the frames before it
    still count)."""

    name = "pyav"

    def __init__(self, path: str | os.PathLike, timeout_s: float | None = None, threads: int = 0):
        import av

        self._av = av
        self._c = None
        self._s = None
        self._cur = None
        self._pushback = None
        self._stamps: list[int] | None = None  # skip_unwanted(): frame i's pts, and the next frame's rank
        self._wanted: set[int] | None = None
        self._k = 0
        self._grabbed = False
        self._reformatter = None
        self.frame_time: float | None = None
        self.frames_decoded = 0  # frames the decoder gave back (skipped ones are not decoded at all)
        try:
            # FFmpeg's blocking open/read interrupted after the timeout, floored at 1 s as OpenCV's whole
            # milliseconds are (the per-file deadline itself is checked between frames by VideoReader)
            kw = {"timeout": (max(1.0, timeout_s),) * 2} if timeout_s else {}
            self._c = av.open(str(path), **kw)
            self._s = next((x for x in self._c.streams if x.type == "video"), None)
        except Exception:  # noqa: BLE001 - not media, corrupt, truncated index: not opened (as OpenCV)
            self.release()
            return
        if self._s is None:
            self.release()
            return
        self._s.thread_type = "AUTO"
        if threads:
            self._s.codec_context.thread_count = threads
        self._tb = float(self._s.time_base) if self._s.time_base else 0.0
        self._start = self._s.start_time or 0
        self._it = self._decode()
        # the first frame is decoded now (as OpenCV's open does): its display rotation orients every frame
        self._pushback = next(self._it, None)
        self._rotation = float(getattr(self._pushback, "rotation", 0) or 0) if self._pushback is not None else 0.0

    def isOpened(self) -> bool:  # noqa: N802 - cv2.VideoCapture's name
        return self._s is not None

    def _decode(self, packets=None):
        av = self._av
        bad = 0
        cc = self._s.codec_context
        try:
            for pkt in packets if packets is not None else self._c.demux(self._s):
                if self._wanted is not None and pkt.size:  # read per packet when it is sent (frame threads too)
                    cc.skip_frame = "DEFAULT" if pkt.pts in self._wanted else "NONREF"
                try:
                    frames = self._s.codec_context.decode(pkt)
                except av.error.EOFError:
                    return
                except av.error.FFmpegError:
                    bad += 1
                    if bad > MAX_BAD_PACKETS:
                        return
                    continue
                bad = 0
                self.frames_decoded += len(frames)
                yield from frames
        except av.error.FFmpegError:  # demuxing failed (truncated, corrupt container): the stream ends here
            return

    def _time(self, frame) -> float | None:
        return None if frame.pts is None or not self._tb else max(0.0, (frame.pts - self._start) * self._tb)

    def grab(self) -> bool:
        if self._s is None:
            return False
        self._grabbed = True
        if self._stamps is not None:
            return self._grab_ranked()
        if self._pushback is not None:
            self._cur, self._pushback = self._pushback, None
        else:
            self._cur = next(self._it, None)
        self.frame_time = None if self._cur is None else self._time(self._cur)
        return self._cur is not None

    def skip_unwanted(self, stamps: list[int], wanted: set[int]) -> bool:
        """From the start of the stream, walk frame by frame through ``stamps`` (every frame's pts in display
        order, :func:`packet_stamps`) while the decoder skips the non-reference frames whose rank is not in
        ``wanted`` (``skip_frame = "NONREF"`` for their packets, ``DEFAULT`` for the wanted ones): nothing
        refers to a non-reference frame, so every frame that is decoded is exact. A skipped frame still
        counts: ``grab()`` returns True for it and ``retrieve()`` fails. False (nothing changed) once a
        frame was grabbed or after a seek."""
        if self._s is None or self._grabbed or not stamps:
            return False
        self._stamps, self._k = list(stamps), 0
        self._wanted = {stamps[i] for i in wanted if 0 <= i < len(stamps)}
        return True

    def _grab_ranked(self) -> bool:
        """Frame ``self._k`` of the ranked walk: the decoded frame with its pts, or a skipped one (None)."""
        stamps = self._stamps
        if self._k >= len(stamps):
            self._cur = None
            return False
        want = stamps[self._k]
        while True:
            ahead = self._pushback if self._pushback is not None else next(self._it, None)
            self._pushback = ahead
            if ahead is None:  # the decoder ended: later frames are not in the file
                self._cur = None
                return False
            if ahead.pts is not None and ahead.pts < want:  # a frame the table does not hold: dropped
                self._pushback = None
                continue
            break
        if ahead.pts == want:
            self._cur, self._pushback = ahead, None
        else:  # the decoder skipped this one (or it failed to decode): counted, not decoded
            self._cur = None
        self._k += 1
        self.frame_time = max(0.0, (want - self._start) * self._tb) if self._tb else None
        return True

    def _convert(self, frame) -> np.ndarray:
        # one reformatter (swscale context) for the stream: VideoFrame.to_ndarray(format=...) builds a new one
        # for every frame, which costs about a third of the conversion (0.65 ms of 1.9 ms per 720p frame)
        if self._reformatter is None:
            from av.video.reformatter import VideoReformatter

            self._reformatter = VideoReformatter()
        img = self._reformatter.reformat(frame, format="bgr24").to_ndarray()
        return _rotate(img, self._rotation) if self._rotation else img

    def retrieve(self):
        if self._cur is None:
            return False, None
        return True, self._convert(self._cur)

    def read(self):
        return self.retrieve() if self.grab() else (False, None)

    def set(self, prop: int, value: float) -> bool:
        """Only ``CAP_PROP_POS_FRAMES``: seek to the keyframe before frame ``value`` (pts = value / fps) and
        decode up to it; False (the reader falls back to a sequential pass) when that frame is not reached."""
        import cv2

        if prop != cv2.CAP_PROP_POS_FRAMES or self._s is None:
            return False
        fps = self.get(cv2.CAP_PROP_FPS)
        if not fps or not self._tb:
            return False
        target = self._start + int(round(value / fps / self._tb))
        half = 0.5 / fps / self._tb
        try:
            self._c.seek(target, stream=self._s, backward=True, any_frame=False)
        except self._av.error.FFmpegError:
            return False
        self._stamps = self._wanted = None
        self._s.codec_context.skip_frame = "DEFAULT"
        self._grabbed = True
        self._it = self._decode()
        self._pushback = None
        for frame in self._it:
            if frame.pts is None:
                return False
            if frame.pts >= target - half:
                if frame.pts > target + half:  # the index does not hold that frame
                    return False
                self._pushback = frame
                return True
        return False

    def get(self, prop: int) -> float:
        import cv2

        s = self._s
        if s is None:
            return 0.0
        rot = int(round(self._rotation)) % 180 == 90
        if prop == cv2.CAP_PROP_FPS:
            r = s.guessed_rate or s.average_rate
            return float(r) if r else 0.0
        if prop == cv2.CAP_PROP_FRAME_COUNT:  # as OpenCV: nb_frames, else duration x fps
            if s.frames:
                return float(s.frames)
            fps = self.get(cv2.CAP_PROP_FPS)
            dur = s.duration * self._tb if s.duration else (self._c.duration / 1e6 if self._c.duration else 0)
            return float(int(dur * fps + 0.5)) if fps and dur else 0.0
        if prop == cv2.CAP_PROP_FRAME_WIDTH:
            return float(s.codec_context.height if rot else s.codec_context.width)
        if prop == cv2.CAP_PROP_FRAME_HEIGHT:
            return float(s.codec_context.width if rot else s.codec_context.height)
        return 0.0

    def keyframes(self, wanted_pts: set[int] | None = None):
        """Yield ``(timestamp_s, pts, BGR frame)`` for the keyframes only: just keyframe packets are sent to the
        decoder, which skips everything else (``skip_frame = "NONKEY"``); ``wanted_pts`` (stream pts of
        keyframes, as :func:`keyframe_table` gives them) restricts which are decoded at all."""
        if self._s is None:
            return
        try:
            self._c.seek(self._start, stream=self._s, backward=True, any_frame=False)
        except self._av.error.FFmpegError:
            return
        self._stamps = self._wanted = None
        self._grabbed = True
        self._s.codec_context.skip_frame = "NONKEY"

        def packets():
            for pkt in self._c.demux(self._s):
                if pkt.size == 0:
                    yield pkt  # flush
                elif pkt.is_keyframe and (wanted_pts is None or pkt.pts in wanted_pts):
                    yield pkt

        for frame in self._decode(packets()):
            yield self._time(frame), frame.pts, self._convert(frame)

    def release(self) -> None:
        it, self._it = getattr(self, "_it", None), None
        if it is not None:  # the decode generator refers to this capture: close it so nothing waits for the GC
            it.close()
        if self._c is not None:
            try:
                self._c.close()
            except Exception:  # noqa: BLE001 - closing a broken container
                pass
        self._c, self._s, self._cur, self._pushback, self._reformatter = None, None, None, None, None


# --- GStreamer on Jetson (nvv4l2decoder) ----------------------------------------------------------------
_DEMUXERS = {".mp4": "qtdemux", ".mov": "qtdemux", ".m4v": "qtdemux", ".3gp": "qtdemux", ".mkv": "matroskademux",
             ".webm": "matroskademux", ".avi": "avidemux", ".ts": "tsdemux", ".mts": "tsdemux", ".m2ts": "tsdemux"}
_PARSERS = {"h264": "h264parse", "hevc": "h265parse", "h265": "h265parse", "vp8": None, "vp9": "vp9parse",
            "av1": "av1parse", "mpeg4": "mpeg4videoparse", "mpeg2video": "mpegvideoparse"}


def gstreamer_pipeline(path: str | os.PathLike, codec: str | None) -> str | None:
    """The OpenCV GStreamer pipeline that decodes ``path`` on a Jetson's NVDEC (``nvv4l2decoder``), BGR out
    to an appsink (L4T Accelerated GStreamer guide); None for a container or codec it does not cover."""
    demux = _DEMUXERS.get(Path(path).suffix.lower())
    if demux is None or codec not in _PARSERS:
        return None
    loc = str(Path(path).absolute()).replace("\\", "\\\\").replace('"', '\\"')
    parse = f" ! {_PARSERS[codec]}" if _PARSERS[codec] else ""
    return (f'filesrc location="{loc}" ! {demux} ! queue{parse} ! nvv4l2decoder enable-max-performance=1 ! '
            "nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! "
            "appsink sync=false max-buffers=4")


def codec_name(path: str | os.PathLike) -> str | None:
    """The video codec of ``path`` (``h264``, ``hevc``...) from its container, or None."""
    try:
        import av

        with av.open(str(path)) as c:
            s = next((x for x in c.streams if x.type == "video"), None)
            return None if s is None else s.codec_context.name
    except Exception:  # noqa: BLE001 - without PyAV or on an unreadable file: ask OpenCV
        pass
    import cv2

    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        fourcc = int(cap.get(cv2.CAP_PROP_FOURCC))
    finally:
        cap.release()
    tag = "".join(chr((fourcc >> 8 * k) & 0xFF) for k in range(4)).lower()
    return {"avc1": "h264", "h264": "h264", "hvc1": "hevc", "hev1": "hevc", "vp09": "vp9", "av01": "av1",
            "mp4v": "mpeg4"}.get(tag)


def gstreamer_capture(path: str | os.PathLike):
    """An OpenCV GStreamer capture decoding on NVDEC, or None when no pipeline covers the file."""
    import cv2

    pipe = gstreamer_pipeline(path, codec_name(path))
    if pipe is None:
        return None
    return cv2.VideoCapture(pipe, cv2.CAP_GSTREAMER)


# --- NVDEC through PyNvVideoCodec (desktop GPUs) --------------------------------------------------------
class NvdecCapture:
    """A video file decoded on NVDEC by PyNvVideoCodec's ``SimpleDecoder`` (PyNvVideoCodec 2.x API reference:
    ``SimpleDecoder(path, gpu_id=0, use_device_memory=False, output_color_type=OutputColorType.RGB)``, frames
    by index, host memory exported through DLPack), read in order; RGB is converted to BGR."""

    name = "nvdec"

    def __init__(self, path: str | os.PathLike, gpu_id: int = 0):
        self._dec = None
        self._i = 0
        self._cur = None
        self.frame_time = None
        try:
            import PyNvVideoCodec as nvc

            self._dec = nvc.SimpleDecoder(str(path), gpu_id=gpu_id, use_device_memory=False,
                                          output_color_type=nvc.OutputColorType.RGB)
            self._n = len(self._dec)
        except Exception:  # noqa: BLE001 - not a stream NVDEC takes (codec, container): not opened
            self._dec = None

    def isOpened(self) -> bool:  # noqa: N802
        return self._dec is not None

    def grab(self) -> bool:
        if self._dec is None or self._i >= self._n:
            self._cur = None
            return False
        try:
            self._cur = self._dec[self._i]
        except Exception:  # noqa: BLE001 - a frame that does not decode ends the stream, as in OpenCV
            self._cur = None
            return False
        self._i += 1
        return True

    def retrieve(self):
        import cv2

        if self._cur is None:
            return False, None
        rgb = np.from_dlpack(self._cur)
        return True, cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)

    def read(self):
        return self.retrieve() if self.grab() else (False, None)

    def set(self, prop: int, value: float) -> bool:
        return False  # read in order: VideoReader samples by one pass

    def get(self, prop: int) -> float:
        return 0.0  # the container is probed by FFmpeg (edge.media.open_video)

    def release(self) -> None:
        self._dec = self._cur = None
