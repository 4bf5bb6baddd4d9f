"""Test media made on the fly with OpenCV (never committed): face videos and broken files.

Import from any test as ``from media import write_face_video, write_corrupt_files``
(pytest puts ``tests/`` on ``sys.path`` because ``tests/`` has no ``__init__.py``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np


def _load(image) -> np.ndarray:
    if isinstance(image, np.ndarray):
        return image
    img = cv2.imread(str(image), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(image)
    return img


def face_canvas(face: np.ndarray, size=(640, 480), shift=(0, 0), face_frac: float = 0.7) -> np.ndarray:
    """A grey ``size`` (w, h) canvas with ``face`` scaled to ``face_frac`` of its height, moved by ``shift``."""
    w, h = size
    side = int(h * face_frac)
    face = cv2.resize(face, (side * face.shape[1] // face.shape[0], side), interpolation=cv2.INTER_AREA)
    canvas = np.full((h, w, 3), 90, np.uint8)
    fx, fy = face.shape[1], face.shape[0]
    x0 = int(np.clip((w - fx) // 2 + shift[0], 0, w - fx))
    y0 = int(np.clip((h - fy) // 2 + shift[1], 0, h - fy))
    canvas[y0:y0 + fy, x0:x0 + fx] = face
    return canvas


def write_face_video(path, images: Sequence, n_frames: int = 30, fps: float = 10, size=(640, 480),
                     codec: str = "mp4v") -> Path:
    """Write a short real video: the face images in turn on a canvas, drifting a few pixels per frame.

    ``images``: paths or BGR arrays; frame i shows ``images[i * len(images) // n_frames]``.
    """
    path = Path(path)
    faces = [_load(im) for im in images]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {codec} to {path}")
    try:
        for i in range(n_frames):
            face = faces[i * len(faces) // n_frames]
            shift = (int(12 * np.sin(i / 3.0)), int(6 * np.cos(i / 4.0)))
            writer.write(face_canvas(face, size, shift))
    finally:
        writer.release()
    if not path.is_file() or path.stat().st_size == 0:
        raise RuntimeError(f"OpenCV wrote nothing to {path}")
    return path


def _pattern(h: int = 240, w: int = 320, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = cv2.resize(rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8), (w, h))
    cv2.circle(img, (w // 2, h // 2), min(h, w) // 3, (40, 160, 220), -1)
    return img


def write_corrupt_files(folder) -> dict[str, Path]:
    """Broken inputs every reader must reject with a clear error; returns {kind: path}.

    zero_jpg / zero_mp4: 0 bytes; text_jpg / text_mp4: a text file with a media extension;
    truncated_jpg: the first half of a JPEG; truncated_mp4: the first half of an mp4v MP4
    (its index is at the end, so it cannot be opened); truncated_avi: an MJPG AVI cut after
    ~40% of its frames (opens, claims all frames, decodes only the first ones).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {k: folder / n for k, n in [("zero_jpg", "zero.jpg"), ("zero_mp4", "zero.mp4"),
                                        ("text_jpg", "notes.jpg"), ("text_mp4", "notes.mp4"),
                                        ("truncated_jpg", "truncated.jpg"), ("truncated_mp4", "truncated.mp4"),
                                        ("truncated_avi", "truncated.avi")]}
    out["zero_jpg"].write_bytes(b"")
    out["zero_mp4"].write_bytes(b"")
    for k in ("text_jpg", "text_mp4"):
        out[k].write_text("this is not media, only a text file with a media extension\n" * 20)
    ok, jpg = cv2.imencode(".jpg", _pattern())
    assert ok
    out["truncated_jpg"].write_bytes(jpg.tobytes()[: len(jpg) // 2])
    for key, codec in (("truncated_mp4", "mp4v"), ("truncated_avi", "MJPG")):
        full = folder / f"_full_{key}{out[key].suffix}"
        writer = cv2.VideoWriter(str(full), cv2.VideoWriter_fourcc(*codec), 10, (320, 240))
        for i in range(20):
            writer.write(np.roll(_pattern(seed=i % 3), 4 * i, axis=1))
        writer.release()
        data = full.read_bytes()
        full.unlink()
        out[key].write_bytes(data[: int(len(data) * (0.5 if key == "truncated_mp4" else 0.4))])
    return out


def write_face_png(path: Path, seed: int, size: int = 96, pad: int = 8) -> Path:
    """A noise image with a skin-coloured ellipse (not a detectable face: for readers and datasets)."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    cv2.ellipse(img, (size // 2, size // 2), (size // 3, size // 2 - pad), 0, 0, 360, (90, 130, 190), -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)
    return path


# --- clips that look like real archives: H.264/HEVC through PyAV (the ``av`` extra) ----------------------
def have_encoder(codec: str) -> bool:
    """Whether PyAV is installed and its FFmpeg has the encoder ``codec`` (``libx264``, ``libx265``)."""
    try:
        import av
    except ImportError:
        return False
    try:
        av.codec.Codec(codec, "w")
        return True
    except Exception:  # noqa: BLE001 - av.codec.codec.UnknownCodecError and friends
        return False


def _background(size, seed: int = 0) -> np.ndarray:
    """A textured background twice as wide as ``size`` (w, h), to pan across: blurred noise and shapes."""
    w, h = size
    rng = np.random.default_rng(seed)
    bg = cv2.resize(rng.integers(30, 200, (h // 16 + 1, w // 8 + 1, 3), dtype=np.uint8), (2 * w, h),
                    interpolation=cv2.INTER_CUBIC)
    for k in range(12):
        c = tuple(int(v) for v in rng.integers(0, 255, 3))
        cv2.rectangle(bg, (int(rng.integers(0, 2 * w)), int(rng.integers(0, h))),
                      (int(rng.integers(0, 2 * w)), int(rng.integers(0, h))), c, -1)
    return cv2.GaussianBlur(bg, (0, 0), 3)


def archive_frame(faces: Sequence[np.ndarray], i: int, n_frames: int, size, bg: np.ndarray,
                  face_frac: float = 0.45) -> np.ndarray:
    """Frame ``i`` of an archive-like clip: the background panning, one face (in turn) moving over it."""
    w, h = size
    x = int((bg.shape[1] - w) * i / max(1, n_frames - 1))
    frame = bg[:, x:x + w].copy()
    face = faces[i * len(faces) // n_frames]
    side = int(h * face_frac)
    face = cv2.resize(face, (side * face.shape[1] // face.shape[0], side), interpolation=cv2.INTER_AREA)
    fy, fx = face.shape[:2]
    cx = int((w - fx) / 2 + (w - fx) / 3 * np.sin(2 * np.pi * i / 90))
    cy = int((h - fy) / 2 + (h - fy) / 4 * np.cos(2 * np.pi * i / 70))
    frame[cy:cy + fy, cx:cx + fx] = face
    cv2.putText(frame, str(i), (8, h - 10), cv2.FONT_HERSHEY_SIMPLEX, h / 400, (255, 255, 255), max(1, h // 240))
    return frame


def write_archive_video(path, images: Sequence, n_frames: int = 100, fps: float = 25, size=(320, 240),
                        codec: str = "libx264", keyint: int = 250, bframes: int | None = None,
                        preset: str = "veryfast", crf: int = 23) -> Path:
    """Write a clip as real archives are: H.264 (``libx264``) or HEVC (``libx265``) through PyAV, with the
    encoder's default keyframe interval (250) and B-frames (``bframes`` None: the encoder's default, 3),
    a face moving over a panning, textured background (the frame number is drawn in a corner).

    Needs PyAV (``pip install 'ffd-edge[av]'``); see :func:`have_encoder`."""
    import av

    path = Path(path)
    faces = [_load(im) for im in images]
    bg = _background(size, seed=len(str(path)))
    with av.open(str(path), "w") as out:
        from fractions import Fraction

        s = out.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        s.width, s.height = size
        s.pix_fmt = "yuv420p"
        s.codec_context.gop_size = keyint
        opts = {"preset": preset, "crf": str(crf)}
        if codec == "libx264":
            opts["x264-params"] = f"keyint={keyint}" + (f":bframes={bframes}" if bframes is not None else "")
        elif codec == "libx265":
            opts["x265-params"] = (f"keyint={keyint}:log-level=error" +
                                   (f":bframes={bframes}" if bframes is not None else ""))
        s.options = opts
        for i in range(n_frames):
            vf = av.VideoFrame.from_ndarray(archive_frame(faces, i, n_frames, size, bg), format="bgr24")
            for pkt in s.encode(vf):
                out.mux(pkt)
        for pkt in s.encode():
            out.mux(pkt)
    if not path.is_file() or path.stat().st_size == 0:
        raise RuntimeError(f"PyAV wrote nothing to {path}")
    return path
