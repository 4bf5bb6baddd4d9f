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
