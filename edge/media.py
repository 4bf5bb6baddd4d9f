"""Torch-free media I/O: decode images and sample video frames, with clear errors.

``read_image(path)`` decodes any image OpenCV knows into contiguous ``uint8`` BGR
(grey, BGRA and 16-bit images are normalised by :func:`as_bgr`; the EXIF
orientation of phone photos is applied). ``iter_video_frames(path, n_frames=N)`` yields
``(frame_index, timestamp_s, frame_bgr)`` for N frames spread uniformly over the video
(the centre of N equal segments), or every k-th frame with ``every=k``. Uniform sampling
seeks with ``CAP_PROP_POS_FRAMES``; when a seek fails or the container's frame count is
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

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .errors import ConfigError, InputError

IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".webp", ".tif", ".tiff",
                        ".pgm", ".ppm", ".pbm", ".pnm", ".jp2"})
VIDEO_EXTS = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg",
                        ".wmv", ".flv", ".3gp", ".ts"})

SampledFrame = tuple[int, float, np.ndarray]  # (frame index, timestamp in seconds, uint8 BGR frame)

DEFAULT_DECODE_TIMEOUT_S = 300.0


def decode_timeout_s() -> float:
    """Per-file decode budget in seconds: ``FFD_DECODE_TIMEOUT_S`` or 300.

    Range-checked (:mod:`edge.settings`): ``inf``, ``nan``, 0, negative or text is a ConfigError naming
    the variable, not a budget that never expires (the bound, 7 days, keeps OpenCV's int32 ms timeouts valid)."""
    from .settings import env_number

    return env_number("FFD_DECODE_TIMEOUT_S", DEFAULT_DECODE_TIMEOUT_S, "decode_timeout_s")


def is_image(path: str | os.PathLike) -> bool:
    """True if the extension is an image format OpenCV decodes."""
    return Path(path).suffix.lower() in IMAGE_EXTS


def is_video(path: str | os.PathLike) -> bool:
    """True if the extension is a video container OpenCV's FFmpeg backend reads."""
    return Path(path).suffix.lower() in VIDEO_EXTS


def media_files(folder: str | os.PathLike, images: bool = True, videos: bool = True) -> list[Path]:
    """Image and/or video files under ``folder``, recursive and sorted; hidden files and folders
    (``.DS_Store``, macOS ``._*`` twins, ``.git``) are skipped. The one folder walk of detect/screen/sources."""
    root = Path(folder)
    return sorted(p for p in root.rglob("*")
                  if not any(part.startswith(".") for part in p.relative_to(root).parts) and p.is_file()
                  and ((images and is_image(p)) or (videos and is_video(p))))


def iter_image_files(paths: Iterable[str | os.PathLike]) -> Iterator[Path]:
    """Files as given (a non-image becomes an error record downstream), folders searched recursively for images."""
    for p in map(Path, paths):
        if p.is_dir():
            yield from media_files(p, videos=False)
        else:
            yield p


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputError("file not found", path=path, fix="check the path")
    if not path.is_file():
        raise InputError("not a regular file", path=path, fix="pass an image, a video or a folder")
    if path.stat().st_size == 0:
        raise InputError("file is empty (0 bytes)", path=path, fix="re-download or remove the file")


def as_bgr(image: np.ndarray) -> np.ndarray:
    """Any decoded image (grey, BGRA, 16-bit) -> contiguous uint8 BGR, or InputError."""
    import cv2

    if not isinstance(image, np.ndarray) or image.size == 0:
        raise InputError("image is empty")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype in (np.float32, np.float64):
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
    """Decode an image file into ``uint8`` BGR (H, W, 3), or raise InputError naming the file."""
    import cv2

    path = Path(path)
    _check_file(path)
    try:
        data = np.frombuffer(path.read_bytes(), np.uint8)
    except OSError as e:
        raise InputError(f"cannot read file: {e.strerror or e}", path=path) from e
    # ANYCOLOR|ANYDEPTH keeps grey and 16-bit and applies the EXIF orientation (IMREAD_UNCHANGED
    # would ignore it and leave phone photos on their side); alpha is dropped as as_bgr would.
    try:
        image = cv2.imdecode(data, cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH)
    except cv2.error as e:  # e.g. more pixels than CV_IO_MAX_IMAGE_PIXELS
        raise InputError(f"OpenCV cannot decode the image: {str(e).strip().splitlines()[-1]}", path=path) from e
    if image is None:
        what = "not an image, or corrupt/truncated" if is_image(path) else "not an image OpenCV can decode"
        raise InputError(f"cannot decode image ({what})", path=path,
                         fix="re-export the file as JPEG/PNG or remove it")
    try:
        return as_bgr(image)
    except InputError as e:
        raise InputError(e.message, path=path) from e


@dataclass(frozen=True)
class VideoInfo:
    """What the container says; ``frame_count`` may be wrong for broken or truncated files."""

    fps: float
    frame_count: int
    duration_s: float
    width: int
    height: int


def _new_capture(path: Path, timeout_s: float | None = None):
    """An FFmpeg capture whose blocking open and reads give up after ``timeout_s``."""
    import cv2

    ms = int(1000 * (timeout_s or decode_timeout_s()))
    return cv2.VideoCapture(str(path), cv2.CAP_FFMPEG,
                            [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])


def _info(cap) -> VideoInfo:
    import cv2

    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    if not np.isfinite(fps) or fps <= 0 or fps > 1000:
        fps = 0.0
    count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    count = int(count) if np.isfinite(count) and count > 0 else 0
    return VideoInfo(fps=fps, frame_count=count, duration_s=count / fps if fps else 0.0,
                     width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))


def open_video(path: str | os.PathLike, timeout_s: float | None = None):
    """-> (an opened FFmpeg ``cv2.VideoCapture`` with open/read timeouts, its :class:`VideoInfo`).

    InputError naming the file when it is missing, empty or does not open; the caller releases it.
    """
    path = Path(path)
    _check_file(path)
    cap = _new_capture(path, timeout_s)
    if not cap.isOpened():
        cap.release()
        raise InputError("cannot open video (not a video, corrupt or truncated)", path=path,
                         fix="re-encode it (e.g. ffmpeg -i IN -c:v libx264 OUT.mp4) or remove it")
    return cap, _info(cap)


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """fps, frame count, duration and size from the container (no frame is decoded)."""
    cap, info = open_video(path)
    cap.release()
    return info


def uniform_indices(frame_count: int, n_frames: int) -> list[int]:
    """Indices of ``n_frames`` frames at the centres of equal segments (all frames if fewer)."""
    if frame_count <= 0 or n_frames <= 0:
        return []
    if n_frames >= frame_count:
        return list(range(frame_count))
    return [int((i + 0.5) * frame_count / n_frames) for i in range(n_frames)]


class VideoReader:
    """A context-managed video file: ``info``, then :meth:`frames` to sample it.

    After iterating, ``decoded`` is the number of frames that really decoded when the
    reader had to count them, and ``truncated`` is True if fewer frames decoded than the
    container claimed (the frames that did decode were still yielded). ``timeout_s``
    (default :func:`decode_timeout_s`) bounds the whole file: past it, reading raises
    InputError.
    """

    def __init__(self, path: str | os.PathLike, timeout_s: float | None = None):
        self.path = Path(path)
        from .settings import RANGES, check

        self.timeout_s = decode_timeout_s() if timeout_s is None else \
            check("timeout_s", timeout_s, *RANGES["decode_timeout_s"])
        self._deadline = time.monotonic() + self.timeout_s
        self._cap, self.info = open_video(self.path, self.timeout_s)
        self.truncated = False
        self.decoded: int | None = None

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def _time(self, index: int) -> float:
        return index / self.info.fps if self.info.fps else 0.0

    def _check_time(self) -> None:
        if time.monotonic() > self._deadline:
            raise InputError(f"decoding took longer than {self.timeout_s:g} s (per-file decode timeout)",
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
        self._cap = _new_capture(self.path, self.timeout_s)

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

    def _sequential(self, wanted) -> Iterator[SampledFrame]:
        """Decode from the current position (the start), yielding the frames ``wanted(i)`` accepts."""
        i = 0
        while True:
            if wanted(i):
                frame = self._read()
                if frame is None:
                    break
                yield i, self._time(i), as_bgr(frame)
            elif not self._grab():
                break
            i += 1
        if self.decoded is None:
            self.decoded = i
            self.truncated = 0 < i < self.info.frame_count

    def _uniform(self, n_frames: int) -> Iterator[SampledFrame]:
        targets = uniform_indices(self.info.frame_count, n_frames)
        done: set[int] = set()
        # a truncated file fails at its end: probe the last target before trusting the count
        if targets and self._read(targets[-1]) is not None:
            for idx in targets:
                frame = self._read(idx)
                if frame is None:
                    break
                done.add(idx)
                yield idx, self._time(idx), as_bgr(frame)
        if len(done) < len(targets) or not targets:  # seek failed or the count is unreliable
            rest = set(uniform_indices(self._count_frames(), n_frames)) - done
            yield from self._sequential(rest.__contains__)

    def frames(self, n_frames: int | None = None, every: int | None = None) -> Iterator[SampledFrame]:
        """Yield ``(index, timestamp_s, frame)``: N uniform frames, every k-th frame, or all frames."""
        if n_frames is not None and every is not None:
            raise ConfigError("give either n_frames or every, not both")
        if (n_frames is not None and n_frames < 1) or (every is not None and every < 1):
            raise ConfigError(f"n_frames and every must be >= 1 (got n_frames={n_frames}, every={every})")
        step = every or 1
        frames = self._uniform(n_frames) if n_frames else self._sequential(lambda i: i % step == 0)
        n_yielded = 0
        for item in frames:
            n_yielded += 1
            yield item
        if n_yielded == 0:
            raise InputError("video has no decodable frame (empty, corrupt or truncated)", path=self.path,
                             fix="re-encode it (e.g. ffmpeg -i IN -c:v libx264 OUT.mp4) or remove it")


def iter_video_frames(path: str | os.PathLike, n_frames: int | None = None,
                      every: int | None = None) -> Iterator[SampledFrame]:
    """Open, sample and close a video: ``(frame_index, timestamp_s, uint8 BGR frame)`` per sample.

    ``n_frames``: N frames uniformly over the video; ``every``: every k-th frame; neither: all.
    """
    with VideoReader(path) as reader:
        yield from reader.frames(n_frames=n_frames, every=every)
