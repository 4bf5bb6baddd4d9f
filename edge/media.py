"""Torch-free media I/O: decode images and sample video frames, with clear errors.

``read_image(path)`` decodes any image OpenCV knows into contiguous ``uint8`` BGR
(grey, BGRA and 16-bit images are normalised by :func:`as_bgr`; the EXIF
orientation of phone photos is applied). ``iter_video_frames(path, n_frames=N)`` yields
``(frame_index, timestamp_s, frame_bgr)`` for N frames spread uniformly over the video
(the centre of N equal segments), or every k-th frame with ``every=k``. Uniform sampling
chooses per file between seeks (``CAP_PROP_POS_FRAMES``, each decoding from the keyframe
before it) and one sequential pass (``grab()``, colour conversion only for the samples) by
what each costs in decoded frames (:func:`choose_strategy`), so N samples never cost much
more than one pass on long-GOP codecs; when a seek fails or the container's frame count is
wrong (truncated files, broken headers) it falls back to decoding sequentially and
samples the frames that really decode. ``probe_video`` reads fps, frame count, duration
and size from the container; ``open_video`` returns the opened capture with them (for
readers that play a whole file, as ``edge.stream.sources.FileSource``). Every failure a user can
cause (missing, zero-byte, non-media, corrupt or truncated file) is an
:class:`~edge.errors.InputError` naming the file. Decoding one file never touches another, so a
caller can run it in a worker process with a timeout.

No file can hang a run: FFmpeg's blocking opens and reads are interrupted after
``FFD_DECODE_TIMEOUT_S`` (OpenCV's open/read timeouts), and a :class:`VideoReader` stops
with an InputError once one file has taken longer than that in total (default 300 s per
file, checked between frames; frames decoded before still count).
"""
from __future__ import annotations

import math
import os
import stat as stat_mod
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .errors import ConfigError, DecodeTimeoutError, InputError, OutOfMemoryError
from .inputs import BASE_IMAGE_EXTS, OPTIONAL_IMAGE_EXTS, VIDEO_EXTS, has_image_codec, list_inputs, name_error

IMAGE_EXTS = BASE_IMAGE_EXTS  # decoded by every OpenCV build; OPTIONAL_IMAGE_EXTS (.avif, .heic) where it has the codec

SampledFrame = tuple[int, float, np.ndarray]  # (frame index, timestamp in seconds, uint8 BGR frame)

DEFAULT_DECODE_TIMEOUT_S = 300.0
DEFAULT_MAX_IMAGE_PIXELS = 1 << 27  # 134 Mpx: 400 MB as 8-bit BGR; a 30000x30000 header claims 900 Mpx
MIN_FPS, MAX_FPS = 0.1, 1000.0  # a frame rate outside is a broken header (an mdhd timescale of 0 reads as 1/1024)
MAX_DURATION_S = 30 * 86_400.0  # a container duration beyond 30 days is not believed


def decode_timeout_s() -> float:
    """Per-file decode budget in seconds: ``FFD_DECODE_TIMEOUT_S`` or 300.

    Range-checked (:mod:`edge.settings`): ``inf``, ``nan``, 0, negative or text is a ConfigError naming
    the variable, not a budget that never expires (the bound, 7 days, keeps OpenCV's int32 ms timeouts valid)."""
    from .settings import env_number

    return env_number("FFD_DECODE_TIMEOUT_S", DEFAULT_DECODE_TIMEOUT_S, "decode_timeout_s")


_DECODE_THREADS: int | None = None  # set_decode_threads(): this process's count (a screening worker's share)


def set_decode_threads(n: int | None) -> None:
    """Decode threads of every capture this process opens from now on (None: back to :func:`decode_threads`'s
    default). Screening workers call it with their share of the cores (:func:`edge.screen.screen_archive`)."""
    global _DECODE_THREADS
    from .settings import RANGES, check

    _DECODE_THREADS = check("decode_threads", n, *RANGES["decode_threads"], allow_none=True)


def decode_threads() -> int:
    """Threads one video decoder may use: ``FFD_DECODE_THREADS`` when set (0: FFmpeg's automatic count), else the
    process's :func:`set_decode_threads` count, else 0. FFmpeg's automatic count (cores + 1 frame threads) is the
    fastest for one file alone, but it costs 20-30 % more CPU per frame than one thread (measured on libx264 720p
    and 1080p), so workers that already keep every core busy decode with one each."""
    from .settings import env_number

    n = env_number("FFD_DECODE_THREADS", None, "decode_threads")  # None when unset or empty
    return int(n) if n is not None else (_DECODE_THREADS or 0)


def max_image_pixels() -> int:
    """The decode budget of one image or video frame in pixels: ``FFD_MAX_IMAGE_PIXELS`` or 2**27 (134 Mpx).

    Checked against the size an image's header claims *before* anything is allocated (:func:`image_size`);
    :mod:`edge` also sets OpenCV's own limit, ``OPENCV_IO_MAX_IMAGE_PIXELS``, to it before cv2 is loaded."""
    from .settings import env_number

    return env_number("FFD_MAX_IMAGE_PIXELS", DEFAULT_MAX_IMAGE_PIXELS, "max_image_pixels")


# the first files of a run that all time out / run out of memory: then it is the run's settings, not the files
RUN_CHECK_FILES = 3


def transient_run_error(types: set, n: int) -> ConfigError:
    """The run's own error when its first ``n`` files all failed with transient error ``types`` (a decode
    timeout too short for these files, too little memory for this many workers), not a fault of each file."""
    first = "the only file" if n == 1 else f"the first {n} files"
    if types == {"DecodeTimeoutError"}:
        return ConfigError(f"{first} of this run all took longer than the per-file decode timeout "
                           f"(FFD_DECODE_TIMEOUT_S = {decode_timeout_s():g} s); no result was recorded for them",
                           fix="raise FFD_DECODE_TIMEOUT_S (default 300) and re-run")
    if types <= {"OutOfMemoryError", "MemoryError"}:
        return ConfigError(f"{first} of this run all ran out of memory; no result was recorded for them",
                           fix="re-run with fewer --workers or more free memory (or a lower FFD_MAX_IMAGE_PIXELS)")
    return ConfigError(f"{first} of this run all failed with a timeout or an allocation failure "
                       f"({', '.join(sorted(map(str, types)))}); no result was recorded for them",
                       fix="raise FFD_DECODE_TIMEOUT_S, use fewer --workers or free memory, then re-run")


def is_image(path: str | os.PathLike) -> bool:
    """True if the extension is an image format the installed OpenCV decodes (``.avif`` only where it can)."""
    ext = Path(path).suffix.lower()
    return ext in IMAGE_EXTS or (ext in OPTIONAL_IMAGE_EXTS and has_image_codec(ext))


def is_video(path: str | os.PathLike) -> bool:
    """True if the extension is a video container OpenCV's FFmpeg backend reads (``.gif``, ``.mts`` too)."""
    return Path(path).suffix.lower() in VIDEO_EXTS


def media_files(folder: str | os.PathLike, images: bool = True, videos: bool = True) -> list[Path]:
    """Image and/or video files under ``folder``, recursive and sorted; hidden files and folders
    (``.DS_Store``, macOS ``._*`` twins, ``.git``) are skipped, symlinked folders followed once
    (:func:`edge.inputs.list_inputs`, which also says why every other file was left out)."""
    return [p for p, _ in list_inputs([folder], images=images, videos=videos).files]


def iter_image_files(paths: Iterable[str | os.PathLike]) -> Iterator[Path]:
    """Files as given (a non-image becomes an error record downstream), folders searched recursively for images."""
    for p in map(Path, paths):
        if p.is_dir():
            yield from media_files(p, videos=False)
        else:
            yield p


# --- image headers: the size an image claims, read before anything is allocated -------------------------
def image_size(data: bytes | memoryview) -> tuple[int, int] | None:
    """``(width, height)`` from the header of a PNG, JPEG, GIF, BMP, WebP, TIFF, PNM, JPEG 2000 or
    AVIF/HEIF file (standard library only; the largest size where a file holds several), or None
    when the format is not one of these or its header cannot be read."""
    b = bytes(data[:1 << 16]) if not isinstance(data, bytes) else data
    try:
        return _image_size(b)
    except (struct.error, IndexError, ValueError):
        return None


def _image_size(b: bytes) -> tuple[int, int] | None:
    if b[:8] == b"\x89PNG\r\n\x1a\n":
        return struct.unpack(">II", b[16:24])
    if b[:2] == b"\xff\xd8":
        return _jpeg_size(b)
    if b[:6] in (b"GIF87a", b"GIF89a"):
        return struct.unpack("<HH", b[6:10])
    if b[:2] == b"BM":
        if struct.unpack("<I", b[14:18])[0] == 12:  # OS/2 BITMAPCOREHEADER
            return struct.unpack("<HH", b[18:22])
        w, h = struct.unpack("<ii", b[18:26])
        return abs(w), abs(h)
    if b[:4] == b"RIFF" and b[8:12] == b"WEBP":
        return _webp_size(b)
    if b[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return _tiff_size(b)
    if len(b) > 2 and b[0:1] == b"P" and b[1:2] in b"1234567" and b[2:3].isspace():
        return _pnm_size(b)
    if b[:4] == b"\xff\x4f\xff\x51":  # JPEG 2000 codestream: SIZ marker
        x, y, x0, y0 = struct.unpack(">IIII", b[8:24])
        return x - x0, y - y0
    if b[4:8] in (b"jP  ", b"ftyp"):  # JP2 (ihdr: height, width) or ISO-BMFF AVIF/HEIF (ispe: width, height)
        sizes = []
        for tag, order in ((b"ihdr", (1, 0)), (b"ispe", (0, 1))):
            i = b.find(tag)
            while i >= 0:
                off = i + 4 + (4 if tag == b"ispe" else 0)  # ispe is a full box: version and flags first
                v = struct.unpack(">II", b[off:off + 8])
                sizes.append((v[order[0]], v[order[1]]))
                i = b.find(tag, i + 4)
        return max(sizes, key=lambda s: s[0] * s[1]) if sizes else None
    return None


def _jpeg_size(b: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 4 <= len(b):
        if b[i] != 0xFF:
            return None
        marker = b[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length
            i += 2
            continue
        length = struct.unpack(">H", b[i + 2:i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOFn: precision, height, width
            h, w = struct.unpack(">HH", b[i + 5:i + 9])
            return w, h
        if marker == 0xDA or length < 2:  # start of scan before any frame header
            return None
        i += 2 + length
    return None


def _webp_size(b: bytes) -> tuple[int, int] | None:
    chunk = b[12:16]
    if chunk == b"VP8X":
        w = int.from_bytes(b[24:27], "little") + 1
        h = int.from_bytes(b[27:30], "little") + 1
        return w, h
    if chunk == b"VP8L":
        bits = int.from_bytes(b[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 ":
        w, h = struct.unpack("<HH", b[26:30])
        return w & 0x3FFF, h & 0x3FFF
    return None


def _tiff_size(b: bytes) -> tuple[int, int] | None:
    e = "<" if b[:2] == b"II" else ">"
    big = struct.unpack(e + "H", b[2:4])[0] == 43
    if big:  # BigTIFF: 8-byte offsets and counts
        off = struct.unpack(e + "Q", b[8:16])[0]
        n = struct.unpack(e + "Q", b[off:off + 8])[0]
        start, size = off + 8, 20
    else:
        off = struct.unpack(e + "I", b[4:8])[0]
        n = struct.unpack(e + "H", b[off:off + 2])[0]
        start, size = off + 2, 12
    dims = {}
    for k in range(min(n, 4096)):
        ent = b[start + k * size:start + (k + 1) * size]
        tag, typ = struct.unpack(e + "HH", ent[:4])
        if tag in (256, 257):
            val = ent[12:] if big else ent[8:]
            dims[tag] = struct.unpack(e + ("H" if typ == 3 else "I"), val[:2 if typ == 3 else 4])[0]
    return (dims[256], dims[257]) if len(dims) == 2 else None


def _pnm_size(b: bytes) -> tuple[int, int] | None:
    nums: list[int] = []
    for line in b[2:4096].split(b"\n"):
        line = line.split(b"#", 1)[0]
        nums += [int(t) for t in line.split()]
        if len(nums) >= 2:
            return nums[0], nums[1]
    return None


def check_pixels(width: int, height: int, path: str | os.PathLike | None = None, what: str = "image") -> None:
    """InputError when ``width x height`` is empty or over :func:`max_image_pixels` (before any allocation)."""
    budget = max_image_pixels()
    if width <= 0 or height <= 0:
        raise InputError(f"the {what} header claims a size of {width}x{height} px", path=path,
                         fix="re-export the file or remove it")
    if width * height > budget:
        raise InputError(f"the {what} is {width}x{height} px = {width * height / 1e6:.0f} Mpx, over the decode "
                         f"budget of {budget / 1e6:.0f} Mpx (too many pixels)", path=path,
                         fix="downscale the file, or raise FFD_MAX_IMAGE_PIXELS if the memory is there")


def is_alloc_failure(e: BaseException) -> bool:
    """A MemoryError, or an OpenCV error that says an allocation failed."""
    text = str(e).lower()
    return isinstance(e, MemoryError) or any(k in text for k in ("insufficient memory", "failed to allocate",
                                                                 "out of memory", "bad_alloc"))


def _check_file(path: Path) -> None:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InputError("file not found", path=path, fix="check the path") from None
    except OSError as e:  # name too long, symlink loop, permission denied
        raise name_error(path, e) from e
    if not stat_mod.S_ISREG(st.st_mode):
        raise InputError("not a regular file", path=path, fix="pass an image, a video or a folder")
    if st.st_size == 0:
        raise InputError("file is empty (0 bytes)", path=path, fix="re-download or remove the file")


def as_bgr(image: np.ndarray) -> np.ndarray:
    """Any decoded image (grey, BGRA, 16-bit, float) -> contiguous uint8 BGR, or InputError.

    A float image with a NaN or infinite pixel is refused: there is no right colour for it, and a
    NaN cast to uint8 would silently become black that then gets scored."""
    import cv2

    if not isinstance(image, np.ndarray) or image.size == 0:
        raise InputError("image is empty")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype in (np.float16, np.float32, np.float64):
        finite = np.isfinite(image)
        if not finite.all():
            n = int(image.size - np.count_nonzero(finite))
            raise InputError(f"the float image has {n} NaN or infinite pixel value{'s' * (n != 1)}",
                             fix="re-export the image without NaN/Inf (or as 8/16-bit), or remove it")
        image = np.clip(image * (255.0 if image.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise InputError(f"unsupported image dtype {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 1:
        return cv2.cvtColor(image[..., 0], cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return np.ascontiguousarray(image)
    raise InputError(f"unsupported image shape {image.shape}")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file into ``uint8`` BGR (H, W, 3), or raise InputError naming the file.

    The size the header claims is checked against :func:`max_image_pixels` before decoding (a
    16 KB file claiming 30000x30000 px is refused, not decoded into 2.7 GB); an allocation failure
    is an :class:`~edge.errors.OutOfMemoryError` (transient), a format without a decoder says so."""
    import cv2

    path = Path(path)
    _check_file(path)
    ext = path.suffix.lower()
    if ext in OPTIONAL_IMAGE_EXTS and not has_image_codec(ext):
        raise InputError(f"the installed OpenCV has no decoder for {ext} images", path=path,
                         fix="convert the file to JPEG or PNG (e.g. heif-convert IN OUT.jpg)")
    try:
        data = np.frombuffer(path.read_bytes(), np.uint8)
    except MemoryError as e:
        raise OutOfMemoryError("out of memory reading the file", path=path, fix="free memory and re-run") from e
    except OSError as e:
        raise InputError(f"cannot read file: {e.strerror or e}", path=path) from e
    size = image_size(memoryview(data))
    if size is not None:
        check_pixels(*size, path=path)
    # ANYCOLOR|ANYDEPTH keeps grey and 16-bit and applies the EXIF orientation (IMREAD_UNCHANGED
    # would ignore it and leave phone photos on their side); alpha is dropped as as_bgr would.
    try:
        image = cv2.imdecode(data, cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH)
    except (cv2.error, MemoryError) as e:  # e.g. more pixels than OPENCV_IO_MAX_IMAGE_PIXELS, or no memory
        if is_alloc_failure(e):
            raise OutOfMemoryError("out of memory decoding the image", path=path,
                                   fix="free memory (fewer --workers) and re-run; the file is retried") from e
        last = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        if "CV_IO_MAX_IMAGE_PIXELS" in last or "validateInputImageSize" in last:
            raise InputError("the image has more pixels than the decode budget (too many pixels)", path=path,
                             fix="downscale the file, or raise FFD_MAX_IMAGE_PIXELS") from e
        raise InputError(f"OpenCV cannot decode the image: {last}", path=path) from e
    if image is None:
        what = "not an image, or corrupt/truncated" if is_image(path) else "not an image OpenCV can decode"
        raise InputError(f"cannot decode image ({what})", path=path,
                         fix="re-export the file as JPEG/PNG or remove it")
    try:
        return as_bgr(image)
    except MemoryError as e:
        raise OutOfMemoryError("out of memory converting the image", path=path, fix="free memory and re-run") from e
    except InputError as e:
        raise InputError(e.message, path=path, fix=e.fix) from e


@dataclass(frozen=True)
class VideoInfo:
    """What the container says; ``frame_count`` may be wrong for broken or truncated files."""

    fps: float  # 0.0: unknown (missing or implausible)
    frame_count: int  # 0: unknown
    duration_s: float | None  # frame_count / fps; None when either is unknown or the result is absurd
    width: int
    height: int


def _new_capture(path: Path, timeout_s: float | None = None, decoder: str = "opencv"):
    """A capture of ``decoder`` (:mod:`edge.decoders`) whose blocking open and reads give up after ``timeout_s``:
    OpenCV's FFmpeg back-end (``opencv``), PyAV (``pyav``), GStreamer with nvv4l2decoder (``gstreamer``; None
    when no pipeline covers the file) or PyNvVideoCodec (``nvdec``)."""
    import cv2

    timeout_s = timeout_s or decode_timeout_s()
    threads = decode_threads()
    if decoder == "pyav":
        from .decoders import PyAVCapture

        return PyAVCapture(path, timeout_s, threads=threads)
    if decoder == "gstreamer":
        from .decoders import gstreamer_capture

        return gstreamer_capture(path)
    if decoder == "nvdec":
        from .decoders import NvdecCapture

        return NvdecCapture(path)
    ms = int(1000 * timeout_s)
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
    if threads:
        params += [cv2.CAP_PROP_N_THREADS, threads]
    return cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, params)


def plausible_fps(fps: float) -> float:
    """``fps`` when it is a frame rate a real video has (MIN_FPS..MAX_FPS), else 0.0 (unknown)."""
    return float(fps) if math.isfinite(fps) and MIN_FPS <= fps <= MAX_FPS else 0.0


def _info(cap) -> VideoInfo:
    """What the container says, sanity-checked: an implausible frame rate (an ``mdhd`` timescale of 0
    reads as 1/1024 fps) or duration is unknown (0 fps, ``duration_s`` None), never believed."""
    import cv2

    fps = plausible_fps(float(cap.get(cv2.CAP_PROP_FPS) or 0.0))
    count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    count = int(count) if np.isfinite(count) and 0 < count < 1e12 else 0
    duration = count / fps if fps and count else None
    if duration is not None and duration > MAX_DURATION_S:
        duration = None
    return VideoInfo(fps=fps, frame_count=count, duration_s=duration,
                     width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))


def open_video(path: str | os.PathLike, timeout_s: float | None = None, decoder: str | None = None,
               _used: list | None = None):
    """-> (an opened capture with open/read timeouts, its :class:`VideoInfo`): ``decoder`` (default
    :func:`edge.decoders.select_decoder`: ``--decoder``/``FFD_DECODER``/auto) reads it; every capture has
    ``cv2.VideoCapture``'s ``read()``, ``grab()``, ``retrieve()`` and ``release()``.

    InputError naming the file when it is missing, empty or does not open; the caller releases it. A hardware
    decoder (``gstreamer``, ``nvdec``) that cannot open the file hands it to the software one; its
    :class:`VideoInfo` is always the container's, probed by FFmpeg.
    """
    from .decoders import select_decoder, software_decoder

    path = Path(path)
    _check_file(path)
    decoder = decoder or select_decoder()[0]
    probe = None
    if decoder in ("gstreamer", "nvdec"):  # their frame counts and rates are not the container's
        probe = _new_capture(path, timeout_s)
        cap = _new_capture(path, timeout_s, decoder) if probe.isOpened() else None
        if cap is None or not cap.isOpened():
            if cap is not None:
                cap.release()
            cap, decoder = probe, "opencv"
            if software_decoder() == "pyav":
                probe.release()
                probe, cap, decoder = None, _new_capture(path, timeout_s, "pyav"), "pyav"
    else:
        cap = _new_capture(path, timeout_s, decoder)
    if _used is not None:
        _used.append(decoder)
    if not cap.isOpened():
        cap.release()
        raise InputError("cannot open video (not a video, corrupt or truncated)", path=path,
                         fix="re-encode it (e.g. ffmpeg -i IN -c:v libx264 OUT.mp4) or remove it")
    info = _info(probe if probe is not None else cap)
    if probe is not None and probe is not cap:
        probe.release()
    if info.width * info.height > max_image_pixels():
        cap.release()
        check_pixels(info.width, info.height, path, "video frame")
    return cap, info


def probe_video(path: str | os.PathLike, decoder: str | None = None) -> VideoInfo:
    """fps, frame count, duration and size from the container."""
    cap, info = open_video(path, decoder=decoder)
    cap.release()
    return info


def uniform_indices(frame_count: int, n_frames: int) -> list[int]:
    """Indices of ``n_frames`` frames at the centres of equal segments (all frames if fewer)."""
    if frame_count <= 0 or n_frames <= 0:
        return []
    if n_frames >= frame_count:
        return list(range(frame_count))
    return [int((i + 0.5) * frame_count / n_frames) for i in range(n_frames)]


# --- how N uniform frames are read: seeks or one sequential pass -----------------------------------------
STRATEGIES = ("auto", "seek", "sequential")
ASSUMED_GOP = 250  # frames between keyframes when the file does not say: x264/x265's default keyint
GOP_PROBE_PACKETS = 600  # packets demuxed (not decoded) to measure the keyframe interval
DEFAULT_HOLD_BYTES = 256 << 20  # frames a sequential pass holds until the container's frame count is confirmed


def keyframe_interval(path: str | os.PathLike, max_packets: int = GOP_PROBE_PACKETS) -> int | None:
    """The keyframe interval (GOP length, frames) of the video at ``path``, from the first ``max_packets``
    packets of its container, demuxed and not decoded (PyAV, the ``av`` extra); ``max_packets`` when the
    first keyframe has no successor in them (a long GOP), None without PyAV or when the file does not demux."""
    try:
        import av
    except ImportError:
        return None
    try:
        with av.open(str(path)) as c:
            stream = next((s for s in c.streams if s.type == "video"), None)
            if stream is None:
                return None
            keys, n = [], 0
            for pkt in c.demux(stream):
                if pkt.size == 0:  # the flush packet at the end
                    continue
                if pkt.is_keyframe:
                    keys.append(n)
                    if len(keys) >= 3:
                        break
                n += 1
                if n >= max_packets:
                    break
    except Exception:  # noqa: BLE001 - a file PyAV cannot demux: the interval is unknown, OpenCV still decodes it
        return None
    if len(keys) >= 2:
        return max(1, max(b - a for a, b in zip(keys, keys[1:])))
    return max(n, 1) if n else None


def choose_strategy(frame_count: int, n_samples: int, gop: int | None) -> str:
    """``"sequential"`` when ``n_samples`` seeks (each decoding up to a keyframe interval, plus the probe of
    the last target) would decode at least as many frames as one pass over ``frame_count``; else ``"seek"``.
    An unknown interval is taken as :data:`ASSUMED_GOP` (long: real encoders' default)."""
    gop = gop or ASSUMED_GOP
    if frame_count <= 0 or n_samples <= 0:
        return "sequential"
    return "sequential" if (n_samples + 1) * gop >= frame_count else "seek"


class VideoReader:
    """A context-managed video file: ``info``, then :meth:`frames` to sample it.

    After iterating, ``decoded`` is the number of frames that really decoded when the
    reader had to count them, and ``truncated`` is True if fewer frames decoded than the
    container claimed (the frames that did decode were still yielded). ``timeout_s``
    (default :func:`decode_timeout_s`) bounds the whole file: past it, reading raises
    InputError.

    Uniform samples (``frames(n_frames=N)``) are read by ``strategy``: ``seek`` (one
    ``CAP_PROP_POS_FRAMES`` seek per sample: each decodes from the keyframe before it), ``sequential``
    (one pass that ``grab()``s every frame and colour-converts only the samples, stopping after the last;
    PyAV skips the non-reference frames that are not samples, ``skipping``)
    or ``auto`` (default: :func:`choose_strategy` by the keyframe interval, :func:`keyframe_interval`, or
    :data:`ASSUMED_GOP`). Both give the same frames, indices and timestamps; ``strategy`` and ``gop`` say
    what was used. A sequential pass holds its samples (at most ``hold_bytes``, default 256 MB) until it
    reaches the last one, so that a container claiming more frames than decode still gives exactly the
    uniform samples of the frames that do.

    ``decoder`` (default :func:`edge.decoders.select_decoder`: ``FFD_DECODER`` or auto): ``pyav``, ``opencv``,
    ``gstreamer`` or ``nvdec``; ``decoder`` and ``decoder_reason`` say which read the file and why. Every
    back-end gives the same indices; a timestamp is the frame's pts where the back-end gives it (``pyav``:
    exact for variable frame rates too), else ``index / fps``. ``frames(keyframes=True)`` samples the
    keyframes only (their exact indices and pts from the container, :func:`edge.decoders.keyframe_times`).
    """

    def __init__(self, path: str | os.PathLike, timeout_s: float | None = None,
                 hold_bytes: int = DEFAULT_HOLD_BYTES, decoder: str | None = None):
        self.path = Path(path)
        from .decoders import select_decoder
        from .settings import RANGES, check

        self.timeout_s = decode_timeout_s() if timeout_s is None else \
            check("timeout_s", timeout_s, *RANGES["decode_timeout_s"])
        self.decoder, self.decoder_reason = select_decoder(decoder)
        self._deadline = time.monotonic() + self.timeout_s
        used: list[str] = []
        self._cap, self.info = open_video(self.path, self.timeout_s, self.decoder, _used=used)
        if used and used[0] != self.decoder:
            self.decoder_reason = f"{self.decoder} could not open the file; {used[0]} read it"
            self.decoder = used[0]
        self._times: dict[int, float] = {}  # exact timestamps of sampled frames, where the back-end gives them
        self.truncated = False
        self.decoded: int | None = None
        self.hold_bytes = hold_bytes
        self.strategy: str | None = None  # how the last frames() read the file: seek | sequential
        self.skipping = False  # the last sequential pass let the decoder skip unwanted non-reference frames
        self.gop: int | None = None  # the keyframe interval auto chose by (None: assumed ASSUMED_GOP)

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    @property
    def frames_decoded(self) -> int | None:
        """Frames the decoder has given back since the file was (re)opened, where the back-end counts them (PyAV)."""
        return getattr(self._cap, "frames_decoded", None)

    def _time(self, index: int) -> float:
        t = self._times.get(index)
        if t is not None:
            return t
        return index / self.info.fps if self.info.fps else 0.0

    def extend_deadline(self, seconds: float) -> None:
        """Move the per-file deadline by ``seconds`` the caller spent not decoding (a full prefetch queue)."""
        self._deadline += max(0.0, seconds)

    def _note_time(self, index: int) -> None:
        t = getattr(self._cap, "frame_time", None)
        if t is not None:
            self._times[index] = t

    def _check_time(self) -> None:
        if time.monotonic() > self._deadline:
            raise DecodeTimeoutError(f"decoding took longer than {self.timeout_s:g} s (per-file decode timeout)",
                                     path=self.path, fix="re-encode the file (e.g. ffmpeg -i IN -c:v libx264 OUT.mp4), "
                                                         "or raise FFD_DECODE_TIMEOUT_S")

    def _grab(self) -> bool:
        self._check_time()
        return self._cap.grab()

    def _read(self, index: int | None = None):
        """Decode the next frame, or frame ``index`` after a seek; None when that fails."""
        import cv2

        self._check_time()
        if index is not None and not self._cap.set(cv2.CAP_PROP_POS_FRAMES, index):
            return None
        ok, frame = self._cap.read()
        return frame if ok and frame is not None and frame.size else None

    def _restart(self) -> None:
        self._cap.release()
        self._cap = _new_capture(self.path, self.timeout_s, self.decoder)

    def _skip_unwanted(self, wanted) -> None:
        """Before a sequential pass from the start: let a decoder that can (PyAV) skip the non-reference frames
        not in ``wanted`` (indices). Frame ranks then come from the container's timestamps, so only when its
        packets are as many as its frame count says and each has a pts of its own (else: every frame decoded)."""
        skip = getattr(self._cap, "skip_unwanted", None)
        if skip is None or self.info.frame_count <= 0:
            return
        from .decoders import packet_stamps

        stamps = packet_stamps(self.path)
        if stamps is not None and len(stamps) == self.info.frame_count:
            self.skipping = bool(skip(stamps, set(wanted)))

    def _count_frames(self) -> int:
        """Frames that really decode (grab() decodes without the colour conversion)."""
        self._restart()
        n = 0
        while self._grab():
            n += 1
        self._restart()
        self.decoded = n
        self.truncated = 0 < n < self.info.frame_count
        return n

    def _sequential(self, wanted, stop_after: int | None = None) -> Iterator[SampledFrame]:
        """Decode from the current position (the start), yielding the frames ``wanted(i)`` accepts; with
        ``stop_after``, stop once that frame is passed (the rest of the file is not decoded)."""
        i = 0
        while stop_after is None or i <= stop_after:
            if wanted(i):
                frame = self._read()
                if frame is None:
                    break
                self._note_time(i)
                yield i, self._time(i), as_bgr(frame)
            elif not self._grab():
                break
            i += 1
        else:
            return  # stopped after the last wanted frame: how many frames the file has is not known
        if self.decoded is None:
            self.decoded = i
            self.truncated = 0 < i < self.info.frame_count

    def _uniform(self, n_frames: int, strategy: str) -> Iterator[SampledFrame]:
        targets = uniform_indices(self.info.frame_count, n_frames)
        if not targets:  # no frame count: count the frames that decode, then one pass
            self.strategy = "sequential"
            yield from self._sequential(set(uniform_indices(self._count_frames(), n_frames)).__contains__)
            return
        if self.decoder in ("gstreamer", "nvdec"):  # hardware decoders are read in order
            strategy = "sequential"
        if strategy == "auto":
            if choose_strategy(self.info.frame_count, len(targets), 1) == "seek":  # not sequential whatever the GOP
                self.gop = keyframe_interval(self.path)
            strategy = choose_strategy(self.info.frame_count, len(targets), self.gop)
        self.strategy = strategy
        if strategy == "seek":
            yield from self._uniform_seek(targets, n_frames)
        else:
            yield from self._uniform_sequential(targets, n_frames)

    def _uniform_seek(self, targets: list[int], n_frames: int) -> Iterator[SampledFrame]:
        done: set[int] = set()
        # a truncated file fails at its end: probe the last target before trusting the count
        if self._read(targets[-1]) is not None:
            for idx in targets:
                frame = self._read(idx)
                if frame is None:
                    break
                done.add(idx)
                self._note_time(idx)
                yield idx, self._time(idx), as_bgr(frame)
        if len(done) < len(targets):  # seek failed or the count is unreliable
            rest = set(uniform_indices(self._count_frames(), n_frames)) - done
            yield from self._sequential(rest.__contains__)

    def _uniform_sequential(self, targets: list[int], n_frames: int) -> Iterator[SampledFrame]:
        """One pass over the file up to the last target. Samples are held (up to ``hold_bytes``) until the
        last target decodes: if the file ends before it (its container claims more frames than it has), the
        samples become the uniform ones of the frames that did decode, as with seeks."""
        held: dict[int, np.ndarray] = {}
        streamed: set[int] = set()  # samples already given (only once the budget was exceeded)
        held_bytes, reached = 0, False
        last = targets[-1]
        self._skip_unwanted(targets)
        for i, t, frame in self._sequential(set(targets).__contains__, stop_after=last):
            reached = i == last
            if not streamed and held_bytes + frame.nbytes > self.hold_bytes:  # over budget: stream from here on
                for j in sorted(held):
                    streamed.add(j)
                    yield j, self._time(j), held.pop(j)
            if streamed or held_bytes + frame.nbytes > self.hold_bytes:
                streamed.add(i)
                yield i, t, frame
            else:
                held[i] = frame
                held_bytes += frame.nbytes
        if reached or self.decoded is None:
            for j in sorted(held):
                yield j, self._time(j), held.pop(j)
            return
        # the file ended before the last target: sample the frames that do decode (those held are reused;
        # frames already streamed cannot be taken back)
        new = uniform_indices(self.decoded, n_frames)
        keep = {j: held[j] for j in new if j in held}
        held.clear()
        rest = set(new) - set(keep) - streamed
        if rest:
            self._restart()
            for i, t, frame in self._sequential(rest.__contains__, stop_after=max(rest)):
                while keep and min(keep) < i:
                    j = min(keep)
                    yield j, self._time(j), keep.pop(j)
                yield i, t, frame
        for j in sorted(keep):
            yield j, self._time(j), keep[j]

    def _keyframes(self, n_frames: int | None) -> Iterator[SampledFrame]:
        """The keyframes (``n_frames`` of them spread uniformly, or all): indices and pts from the container;
        PyAV decodes nothing else (``skip_frame = "NONKEY"``), other back-ends seek to each (one frame each)."""
        from .decoders import keyframe_table

        self.strategy = "keyframes"
        keys = keyframe_table(self.path)
        if keys is None:
            if not _have_av():
                from .errors import MissingDependencyError

                raise MissingDependencyError("av", "av", "sampling keyframes (--sample keyframes): they are "
                                                         "found in the container by PyAV")
            raise InputError("cannot read the keyframes of the video (the container does not demux)",
                             path=self.path, fix="re-encode it (e.g. ffmpeg -i IN -c:v libx264 OUT.mp4) or remove it")
        if n_frames is not None and n_frames < len(keys):
            keys = [keys[j] for j in uniform_indices(len(keys), n_frames)]
        if self.decoder == "pyav":  # the decoder gives back the keyframes' pts: pts -> (index, time)
            by_pts = {pts: (i, t) for i, t, pts in keys}
            for _t, pts, frame in self._cap.keyframes(set(by_pts) if n_frames is not None else None):
                self._check_time()
                hit = by_pts.get(pts)
                if hit is None:  # not one of the keyframes asked for
                    continue
                self._times[hit[0]] = hit[1]
                yield hit[0], hit[1], as_bgr(frame)
            return
        for i, t, _ in keys:
            self._times[i] = t
        targets = [i for i, _, _ in keys]
        done: set[int] = set()
        for idx in targets:
            frame = self._read(idx)
            if frame is None:
                break
            done.add(idx)
            yield idx, self._time(idx), as_bgr(frame)
        rest = set(targets) - done
        if rest:  # seeks failed: one pass over the file up to the last keyframe left
            self._restart()
            yield from self._sequential(rest.__contains__, stop_after=max(rest))

    def frames(self, n_frames: int | None = None, every: int | None = None,
               strategy: str = "auto", keyframes: bool = False) -> Iterator[SampledFrame]:
        """Yield ``(index, timestamp_s, frame)``: N uniform frames, every k-th frame, or all frames; with
        ``keyframes``, the keyframes only (``n_frames``: that many of them, spread uniformly).

        ``strategy`` (uniform frames only): ``auto``, ``seek`` or ``sequential`` (see the class)."""
        if keyframes and every is not None:
            raise ConfigError("keyframe sampling takes n_frames (how many keyframes), not every")
        if n_frames is not None and every is not None:
            raise ConfigError("give either n_frames or every, not both")
        if (n_frames is not None and n_frames < 1) or (every is not None and every < 1):
            raise ConfigError(f"n_frames and every must be >= 1 (got n_frames={n_frames}, every={every})")
        if strategy not in STRATEGIES:
            raise ConfigError(f"unknown sampling strategy {strategy!r}", fix=f"use one of {', '.join(STRATEGIES)}")
        step = every or 1
        if keyframes:
            frames = self._keyframes(n_frames)
        elif n_frames:
            frames = self._uniform(n_frames, strategy)
        else:
            self.strategy = "sequential"
            if step > 1:
                self._skip_unwanted(range(0, self.info.frame_count, step))
            frames = self._sequential(lambda i: i % step == 0)
        n_yielded = 0
        for item in frames:
            n_yielded += 1
            yield item
        if n_yielded == 0:
            raise InputError("video has no decodable frame (empty, corrupt or truncated)", path=self.path,
                             fix="re-encode it (e.g. ffmpeg -i IN -c:v libx264 OUT.mp4) or remove it")


def iter_video_frames(path: str | os.PathLike, n_frames: int | None = None,
                      every: int | None = None, strategy: str = "auto", keyframes: bool = False,
                      decoder: str | None = None) -> Iterator[SampledFrame]:
    """Open, sample and close a video: ``(frame_index, timestamp_s, uint8 BGR frame)`` per sample.

    ``n_frames``: N frames uniformly over the video; ``every``: every k-th frame; neither: all;
    ``keyframes``: the keyframes (``n_frames`` of them, or all). ``strategy``: how uniform frames are read,
    ``decoder``: which back-end reads them (:class:`VideoReader`)."""
    with VideoReader(path, decoder=decoder) as reader:
        yield from reader.frames(n_frames=n_frames, every=every, strategy=strategy, keyframes=keyframes)


def _have_av() -> bool:
    from .decoders import have_av

    return have_av()
