"""The bad-input corpus of the reliability suite, generated on the fly (never committed).

``build_media_corpus(folder, faces)`` writes images and videos that users really meet in
archives and camera dumps -- broken, odd and merely unusual -- and returns one
:class:`Entry` per file with what a correct run must make of it:

* ``face``: a correct result with at least one face;
* ``no_face``: a correct result without a face (and without an error);
* ``error``: a recorded, clear error (an :class:`~edge.errors.FfdError` message);
* ``any``: either (a truncated or bit-flipped file may decode in part), never a crash or hang.

Files sit under ``folder/real/`` and ``folder/fake/`` (alternating), so an extraction of
the whole folder is a labelled dataset that ``ffd eval`` can read.

How the hard cases are made with nothing but OpenCV and the standard library:

* *audio-only*: OpenCV cannot write audio, so a real PCM WAV file is renamed ``.mp4``
  (FFmpeg probes the content, finds no video stream).
* *variable frame rate*: OpenCV writers are constant-rate, so an mp4v MP4 is written and
  its ``stts`` box (sample durations) is rewritten with irregular durations
  (:func:`set_mp4_frame_durations`); the ``moov`` box sits after ``mdat``, so chunk offsets
  stay valid. FFmpeg then reports irregular timestamps (``CAP_PROP_POS_MSEC``).
* *rotated metadata*: the display matrix in the MP4 ``tkhd`` box is patched to 90 degrees
  (:func:`set_mp4_rotation`) over frames stored on their side; OpenCV (FFmpeg backend,
  ``CAP_PROP_ORIENTATION_AUTO``) turns them upright. For JPEG an EXIF APP1 segment with
  ``Orientation = 6`` is inserted (:func:`jpeg_with_exif_orientation`).
* *20 faces*: 20 london_faces portraits tiled on one frame; *border*: a face half outside.
* *truncated*/*bit-flipped* MP4/AVI/MKV: cut files and seeded byte flips in the payload.

``build_model_corpus(folder, good_onnx)`` writes broken models: corrupt/truncated/empty
ONNX, ONNX without the model card, a TensorRT engine whose sidecar says another TensorRT
version, an engine without a sidecar, a checkpoint of another architecture, a non-ffd torch
file and malicious pickles whose ``__reduce__`` would create :data:`MARKER`.
"""
from __future__ import annotations

import io
import os
import pickle
import struct
import wave
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from media import face_canvas, write_face_video

EXPECTS = ("face", "no_face", "error", "any", "skipped")
HOSTILE_NAME = "<img src=x onerror=alert(1)>&.jpg"  # for the HTML report: must come out escaped
MARKER = "PWNED_marker"  # what a malicious pickle would create next to itself


# The classes of issue 15; every corpus entry and every outcome carries one (``cls``), and the
# reliability summary counts per class.
CLASSES = {
    1: "outputs that overwrite inputs (data loss)",
    2: "hostile or broken models and checkpoints",
    3: "odd media and names",
    4: "bad settings (numbers, environment, detector model)",
    5: "failures recorded as results",
    6: "streams that never answer",
    7: "signals",
    8: "HTML report escaping",
}


@dataclass(frozen=True)
class Entry:
    name: str  # printable (a name that is not UTF-8 or holds control characters is escaped here, not in path)
    path: Path
    kind: str  # image | video | other (a link or a file no entry point reads)
    expect: str  # face | no_face | error | any | skipped (listed as not scored, with a reason)
    note: str = ""
    cls: int = 3  # issue 15 class (CLASSES)
    max_duration_s: float | None = None  # a screened row must not claim a longer duration (None: no check)


@dataclass(frozen=True)
class ModelEntry:
    name: str
    path: Path
    kind: str  # onnx | engine | ckpt | detector
    note: str = ""
    cls: int = 2  # issue 15 class (CLASSES)
    check: str = "open"  # open: refused when opened; infer: opens, refused at its first batch (output contract)


# --- small MP4 box editor -------------------------------------------------------------------------
_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts"}


def _parse_boxes(d: bytes, off: int, end: int) -> list:
    out = []
    while off < end:
        size, typ = struct.unpack(">I4s", d[off:off + 8])
        if size < 8:  # 64-bit sizes or to-end boxes: not written by OpenCV for small files
            raise ValueError(f"unsupported MP4 box size {size} for {typ!r}")
        body = d[off + 8:off + size]
        out.append([typ, _parse_boxes(d, off + 8, off + size) if typ in _CONTAINERS else body])
        off += size
    return out


def _serialize(boxes: list) -> bytes:
    parts = []
    for typ, body in boxes:
        raw = _serialize(body) if isinstance(body, list) else body
        parts.append(struct.pack(">I4s", 8 + len(raw), typ) + raw)
    return b"".join(parts)


def _find(boxes: list, *path: bytes) -> list:
    for node in boxes:
        if node[0] == path[0]:
            return node if len(path) == 1 else _find(node[1], *path[1:])
    raise KeyError(path)


def _edit_mp4(path: Path, edit) -> None:
    d = path.read_bytes()
    top = _parse_boxes(d, 0, len(d))
    names = [t for t, _ in top]
    if names.index(b"moov") < names.index(b"mdat"):
        raise ValueError("moov before mdat: resizing it would move the chunk offsets")
    edit(top)
    path.write_bytes(_serialize(top))


def set_mp4_frame_durations(path: Path, factors: Sequence[float]) -> list[int]:
    """Rewrite the ``stts`` box: sample i lasts in proportion to ``factors[i % len(factors)]``, the total
    duration unchanged (so the edit list still covers every sample); returns the durations."""
    durations: list[int] = []

    def edit(top):
        stts = _find(top, b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stts")
        body = stts[1]
        n_entries = struct.unpack(">I", body[4:8])[0]
        entries = [struct.unpack(">II", body[8 + 8 * i:16 + 8 * i]) for i in range(n_entries)]
        n = sum(c for c, _ in entries)
        base = entries[0][1]
        raw = [factors[i % len(factors)] for i in range(n)]
        # same total duration (the edit list and mdhd keep their length), irregular steps
        durations.extend(max(1, int(base * n * r / sum(raw))) for r in raw)
        durations[-1] += base * n - sum(durations)
        runs: list[list[int]] = []
        for dur in durations:
            if runs and runs[-1][1] == dur:
                runs[-1][0] += 1
            else:
                runs.append([1, dur])
        stts[1] = body[:4] + struct.pack(">I", len(runs)) + b"".join(struct.pack(">II", c, x) for c, x in runs)

    _edit_mp4(path, edit)
    return durations


def set_mp4_rotation(path: Path, degrees: int = 90) -> None:
    """Patch the display matrix of the (first) track header: a player shows the frames rotated."""
    one, zero = 1 << 16, 0
    a, b, c, dd = {90: (zero, one, -one, zero), 180: (-one, zero, zero, -one), 270: (zero, -one, one, zero)}[degrees]

    def edit(top):
        tkhd = _find(top, b"moov", b"trak", b"tkhd")
        body = bytearray(tkhd[1])
        off = 40 if body[0] == 0 else 52  # version 0: 32-bit times; matrix after layer/alt/volume
        body[off:off + 36] = struct.pack(">9i", a, b, 0, c, dd, 0, 0, 0, 1 << 30)
        tkhd[1] = bytes(body)

    _edit_mp4(path, edit)


def set_mp4_timescale(path: Path, timescale: int = 0) -> None:
    """Patch the media header (``mdhd``) timescale of the first track: 0 is invalid (FFmpeg reads it as 1,
    and the frame rate then comes out as 1/1024 fps: a 10-frame clip "lasts" 10240 s)."""

    def edit(top):
        mdhd = _find(top, b"moov", b"trak", b"mdia", b"mdhd")
        body = bytearray(mdhd[1])
        off = 12 if body[0] == 0 else 20  # version/flags, then creation and modification times
        body[off:off + 4] = struct.pack(">I", timescale)
        mdhd[1] = bytes(body)

    _edit_mp4(path, edit)


def _png_chunk(typ: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + typ + body + struct.pack(">I", zlib.crc32(typ + body) & 0xFFFFFFFF)


def png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose IHDR (CRC valid) claims ``width x height`` RGB px, followed by a few rows of data:
    a header bomb (a 30000x30000 claim is 2.7 GB as BGR) in well under a kilobyte."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"".join(b"\x00" + b"\x80" * (3 * min(width, 64)) for _ in range(4)))
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", rows) + _png_chunk(b"IEND", b"")


def png_bomb(width: int, height: int) -> bytes:
    """A *valid* 1-bit greyscale PNG of ``width x height`` black pixels: tiny once deflated, 3 bytes per
    pixel once OpenCV decodes it to BGR (20000x20000: ~50 KB -> 1.2 GB)."""
    row = b"\x00" * (1 + (width + 7) // 8)
    z = zlib.compressobj(9)
    data = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")


def jpeg_claiming(image: np.ndarray, width: int, height: int) -> bytes:
    """The JPEG of ``image`` with its frame header (SOF0) patched to claim ``width x height``: libjpeg
    decodes the few real blocks and fills the rest, so an unguarded decoder allocates (and touches)
    the whole claimed image."""
    ok, buf = cv2.imencode(".jpg", image)
    assert ok
    b = bytearray(buf.tobytes())
    i = 2
    while b[i + 1] != 0xC0:
        i += 2 + struct.unpack(">H", b[i + 2:i + 4])[0]
    b[i + 5:i + 9] = struct.pack(">HH", height, width)
    return bytes(b)


def heic_like() -> bytes:
    """The start of an ISO-BMFF HEIC file (an ``ftyp heic`` box and filler): what an iPhone photo looks
    like to a decoder-less OpenCV."""
    ftyp = struct.pack(">I4s4sI", 24, b"ftyp", b"heic", 0) + b"mif1heic"
    return ftyp + struct.pack(">I4s", 16, b"free") + b"\x00" * 8 + b"\x00" * 512


def nonutf8_name(stem: bytes, ext: str) -> str:
    """A file name that is not valid UTF-8 (Latin-1 bytes), as Python sees it on POSIX (lone surrogates)."""
    return os.fsdecode(stem + ext.encode())


def jpeg_with_exif_orientation(image: np.ndarray, orientation: int) -> bytes:
    """A JPEG of ``image`` with an EXIF APP1 segment carrying ``Orientation``."""
    ok, buf = cv2.imencode(".jpg", image)
    assert ok
    jpg = buf.tobytes()
    ifd = struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0)
    tiff = b"MM\x00\x2a" + struct.pack(">I", 8) + ifd
    app1 = b"Exif\x00\x00" + tiff
    return jpg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpg[2:]


# --- writers ------------------------------------------------------------------------------------
def _write_video(path: Path, frames: Sequence[np.ndarray], codec: str, fps: float = 10) -> Path:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {codec} to {path}")
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def _bitflip(src: Path, dst: Path, seed: int, n: int = 24, skip: float = 0.1) -> Path:
    """Copy ``src`` with ``n`` seeded random bytes flipped (past the first ``skip`` of the file)."""
    data = bytearray(src.read_bytes())
    rng = np.random.default_rng(seed)
    for i in rng.integers(int(len(data) * skip), len(data), n):
        data[i] ^= int(rng.integers(1, 256))
    dst.write_bytes(bytes(data))
    return dst


def _wav_bytes(seconds: float = 1.0, rate: int = 8000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        t = np.arange(int(seconds * rate))
        w.writeframes((np.sin(t * 2 * np.pi * 440 / rate) * 8000).astype("<i2").tobytes())
    return buf.getvalue()


def _no_face_frame(i: int, size=(320, 240)) -> np.ndarray:
    w, h = size
    rng = np.random.default_rng(i)
    img = cv2.resize(rng.integers(0, 255, (h // 16, w // 16, 3), dtype=np.uint8), (w, h),
                     interpolation=cv2.INTER_NEAREST)
    cv2.rectangle(img, (20 + 3 * i, 30), (120 + 3 * i, 200), (30, 200, 90), -1)
    return img


def tile_faces(faces: Sequence[np.ndarray], cols: int = 5, rows: int = 4, cell: int = 160) -> np.ndarray:
    """``cols x rows`` faces on one frame (cell px each, a small gap between)."""
    canvas = np.full((rows * cell, cols * cell, 3), 90, np.uint8)
    for k in range(cols * rows):
        f = cv2.resize(faces[k % len(faces)], (cell - 16, cell - 16), interpolation=cv2.INTER_AREA)
        y, x = (k // cols) * cell + 8, (k % cols) * cell + 8
        canvas[y:y + cell - 16, x:x + cell - 16] = f
    return canvas


def border_frame(face: np.ndarray, size=(320, 240), out_frac: float = 0.45) -> np.ndarray:
    """The face with ``out_frac`` of its width beyond the right edge of the frame."""
    w, h = size
    side = int(h * 0.8)
    f = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
    canvas = np.full((h, w, 3), 90, np.uint8)
    x0 = w - int(side * (1 - out_frac))
    y0 = (h - side) // 2
    canvas[y0:y0 + side, x0:w] = f[:, : w - x0]
    return canvas


def build_media_corpus(folder: str | Path, faces: Sequence[str | Path], *, n_frames: int = 10,
                       huge: int = 8000) -> list[Entry]:
    """Write the media corpus under ``folder`` (real/ and fake/ halves) and return its entries."""
    folder = Path(folder)
    for sub in ("real", "fake"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    imgs = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in faces]
    if any(im is None for im in imgs) or len(imgs) < 2:
        raise FileNotFoundError("need at least two readable face images")
    size = (320, 240)
    entries: list[Entry] = []

    def add(name: str, kind: str, expect: str, note: str = "") -> Path:
        p = folder / ("real" if len(entries) % 2 == 0 else "fake") / name
        entries.append(Entry(name, p, kind, expect, note))
        return p

    # --- images
    face = face_canvas(imgs[0], size)
    cv2.imwrite(str(add("face.jpg", "image", "face", "control: a plain face")), face)
    cv2.imwrite(str(add("grey.png", "image", "face", "8-bit greyscale PNG")), cv2.cvtColor(face, cv2.COLOR_BGR2GRAY))
    rgba = cv2.cvtColor(face_canvas(imgs[1], size), cv2.COLOR_BGR2BGRA)
    rgba[..., 3] = 200
    cv2.imwrite(str(add("rgba.png", "image", "face", "BGRA PNG with alpha")), rgba)
    cv2.imwrite(str(add("deep16.png", "image", "face", "16-bit PNG")), face.astype(np.uint16) * 257)
    cv2.imwrite(str(add("one_pixel.png", "image", "no_face", "1x1 image")), np.full((1, 1, 3), 128, np.uint8))
    big = np.full((huge, huge, 3), 90, np.uint8)
    f = cv2.resize(imgs[2 % len(imgs)], (huge // 2, huge // 2), interpolation=cv2.INTER_LINEAR)
    big[huge // 4:huge // 4 + huge // 2, huge // 4:huge // 4 + huge // 2] = f
    cv2.imwrite(str(add(f"huge_{huge}.jpg", "image", "face", f"{huge}x{huge} JPEG")), big,
                [cv2.IMWRITE_JPEG_QUALITY, 70])
    del big, f
    rotated = cv2.rotate(face, cv2.ROTATE_90_COUNTERCLOCKWISE)  # stored on its side, EXIF turns it upright
    add("exif_rotated.jpg", "image", "face", "EXIF Orientation=6 over a sideways face").write_bytes(
        jpeg_with_exif_orientation(rotated, 6))
    cv2.imwrite(str(add(HOSTILE_NAME, "image", "face", "HTML in the file name")), face_canvas(imgs[1], size))
    add("zero.jpg", "image", "error", "0 bytes").write_bytes(b"")
    add("text.png", "image", "error", "text renamed .png").write_text("not an image\n" * 50)
    ok, jpg = cv2.imencode(".jpg", face)
    add("truncated.jpg", "image", "any", "first 40% of a JPEG").write_bytes(jpg.tobytes()[: len(jpg) * 2 // 5])
    _bitflip_bytes = bytearray(jpg.tobytes())
    rng = np.random.default_rng(7)
    for i in rng.integers(len(_bitflip_bytes) // 4, len(_bitflip_bytes), 30):
        _bitflip_bytes[i] ^= int(rng.integers(1, 256))
    add("bitflip.jpg", "image", "any", "30 flipped bytes").write_bytes(bytes(_bitflip_bytes))

    # --- videos
    tmp = folder / "_tmp"
    tmp.mkdir(exist_ok=True)
    write_face_video(add("face.mp4", "video", "face", "control: mp4v MP4"), imgs[:3], n_frames=n_frames, size=size)
    write_face_video(add("face.mkv", "video", "face", "control: MJPG MKV"), imgs[3:5], n_frames=n_frames, size=size,
                     codec="MJPG")
    _write_video(add("no_face.avi", "video", "no_face", "MJPG AVI without faces"),
                 [_no_face_frame(i) for i in range(n_frames)], "MJPG")
    tiled = tile_faces(imgs, 5, 4)
    _write_video(add("faces20.mp4", "video", "face", "20 faces per frame (5x4 tiles)"),
                 [np.roll(tiled, 2 * i, axis=1) for i in range(n_frames)], "mp4v")
    _write_video(add("border_face.mp4", "video", "any", "face 45% beyond the frame border"),
                 [border_frame(imgs[i % len(imgs)], size, 0.45) for i in range(n_frames)], "mp4v")
    vfr = add("vfr.mp4", "video", "face", "irregular sample durations (stts rewritten)")
    write_face_video(vfr, imgs[:2], n_frames=n_frames, size=size)
    set_mp4_frame_durations(vfr, (1, 1, 3, 0.5, 2, 1))
    rot = add("rotated90.mp4", "video", "face", "sideways frames, tkhd display matrix 90 degrees")
    upright = [face_canvas(imgs[i % 2], size, (3 * i, 0)) for i in range(n_frames)]
    _write_video(rot, [cv2.rotate(u, cv2.ROTATE_90_COUNTERCLOCKWISE) for u in upright], "mp4v")
    set_mp4_rotation(rot, 90)
    add("zero.mp4", "video", "error", "0 bytes").write_bytes(b"")
    add("text.mp4", "video", "error", "text renamed .mp4").write_text("this is not a video\n" * 50)
    add("audio_only.mp4", "video", "error", "PCM WAV renamed .mp4 (no video stream)").write_bytes(_wav_bytes())
    for ext, codec, frac, expect in ((".mp4", "mp4v", 0.5, "error"), (".avi", "MJPG", 0.4, "any"),
                                     (".mkv", "MJPG", 0.5, "any")):
        full = write_face_video(tmp / f"full{ext}", imgs[:2], n_frames=n_frames, size=size, codec=codec)
        data = full.read_bytes()
        add(f"truncated{ext}", "video", expect, f"first {int(frac * 100)}% of a {codec} file").write_bytes(
            data[: int(len(data) * frac)])
        _bitflip(full, add(f"bitflip{ext}", "video", "any", f"24 flipped bytes in a {codec} file"), seed=len(ext))
        full.unlink()
    tmp.rmdir()
    entries += _odd_media_and_names(folder, imgs, face, size, n_frames)
    return entries


def _odd_media_and_names(folder: Path, imgs, face: np.ndarray, size, n_frames: int) -> list[Entry]:
    """Class 3: names that are not UTF-8, too long for a crop name, or full of control characters; header
    and PNG bombs; a float TIFF with a NaN; a zero mdhd timescale; .gif/.mts/.avif/.heic; a symlinked
    sub-folder and a symlink loop; a file of no media kind."""
    from edge.inputs import has_image_codec, printable

    out: list[Entry] = []

    def add(name: str, kind: str, expect: str, note: str, sub: str | None = None, **kw) -> Path:
        p = folder / (sub or ("real" if len(out) % 2 == 0 else "fake")) / name
        out.append(Entry(printable(name), p, kind, expect, note, **kw))
        return p

    def img(p: Path, image: np.ndarray) -> None:
        ok, buf = cv2.imencode(p.suffix if p.suffix.isascii() and p.suffix else ".jpg", image)
        assert ok, p
        p.write_bytes(buf.tobytes())

    img(add(nonutf8_name(b"caf\xe9_latin1", ".jpg"), "image", "face", "file name not valid UTF-8 (Latin-1 byte)"),
        face)
    img(add("long_" + "x" * 240 + ".jpg", "image", "face", "a 249-byte name (crop names would pass NAME_MAX)"),
        face_canvas(imgs[1], size))
    img(add("ctrl_\x1b[31mred\x1b[0m\x07\r.jpg", "image", "face", "ESC sequences, BEL and CR in the name"), face)
    add("ctrl_\x1b]0;pwned\x07_bad.png", "image", "error", "control characters in the name of a broken file"
        ).write_text("not an image\n")
    add("bomb_header_30000.png", "image", "error", "PNG whose IHDR claims 30000x30000 px (2.7 GB as BGR)"
        ).write_bytes(png_claiming(30000, 30000))
    add("bomb_header_30000.jpg", "image", "error", "JPEG whose SOF claims 30000x30000 px, 16 KB of data"
        ).write_bytes(jpeg_claiming(face, 30000, 30000))
    add("bomb_zlib_20000.png", "image", "error", "valid 1-bit PNG, 20000x20000 px (~50 KB -> 1.2 GB)"
        ).write_bytes(png_bomb(20000, 20000))
    nan = face.astype(np.float32) / 255.0
    nan[10, 10, 1] = np.nan
    cv2.imwrite(str(add("nan_pixel.tiff", "image", "error", "32-bit float TIFF, one NaN pixel")), nan)
    ts0 = add("mdhd_timescale0.mp4", "video", "any", "mdhd timescale 0 (FFmpeg: 1/1024 fps, 10240 s)",
              max_duration_s=3600.0)
    write_face_video(ts0, imgs[:2], n_frames=n_frames, size=size)
    set_mp4_timescale(ts0, 0)
    anim = cv2.Animation()
    anim.frames = [face_canvas(imgs[i % 3], size, (3 * i, 0)) for i in range(6)]
    anim.durations = [100] * 6
    assert cv2.imwriteanimation(str(add("animated.gif", "video", "face", "animated GIF, 6 frames")), anim)
    write_face_video(add("camcorder.mts", "video", "face", "MPEG-TS (.mts) video"), imgs[:2], n_frames=n_frames,
                     size=size)
    avif = add("photo.avif", "image", "face" if has_image_codec(".avif") else "skipped", "AVIF photo")
    if has_image_codec(".avif"):
        img(avif, face)
    else:
        avif.write_bytes(heic_like().replace(b"heic", b"avif"))
    add("iphone.heic", "image", "face" if has_image_codec(".heic") else "skipped",
        "HEIC photo (OpenCV without a HEIF decoder: skipped with a reason)").write_bytes(heic_like())
    add("notes.txt", "other", "skipped", "a text file in the archive (unsupported extension)").write_text("notes\n")
    # a symlinked sub-folder (followed) whose target lives outside the corpus, and a loop back to its folder
    target = folder.parent / f"{folder.name}_link_target"
    target.mkdir(exist_ok=True)
    img(target / "face_in_link.jpg", face_canvas(imgs[2], size))
    for sub, link, to in (("real", "linked_folder", target), ("fake", "loop", folder / "fake")):
        lp = folder / sub / link
        if lp.is_symlink():
            lp.unlink()
        lp.symlink_to(to, target_is_directory=True)
    out.append(Entry("real/linked_folder/face_in_link.jpg", folder / "real" / "linked_folder" / "face_in_link.jpg",
                     "image", "face", "an image in a symlinked sub-folder"))
    out.append(Entry("fake/loop (symlink to its own folder)", folder / "fake" / "loop", "other", "skipped",
                     "a symlink loop: listed once as skipped, never walked forever"))
    return out


# --- models ---------------------------------------------------------------------------------------
class Malicious:
    """Unpickling calls ``open(marker, 'w')``: the file appears iff a loader executed pickle code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def save_tiny_checkpoint(path: Path, model_name: str = "student_tiny", size: int = 32) -> Path:
    """A real (untrained) ffd checkpoint written by train.checkpoint.save_checkpoint."""
    import torch

    from edge.spec import ModelCard, PreprocessSpec
    from train.checkpoint import save_checkpoint
    from train.registry import create_model

    torch.manual_seed(0)
    model = create_model(model_name)
    return save_checkpoint(path, model, ModelCard(model_name, spec=PreprocessSpec(size=size), threshold=0.5))


def build_model_corpus(folder: str | Path, good_onnx: Path, *, torch_entries: bool = True) -> list[ModelEntry]:
    """Broken models beside ``good_onnx``; every one must be refused with a ModelError-like FfdError."""
    from edge.runtime.engine_cache import (BatchProfile, BuildOptions, EngineEnv, describe_onnx, key_inputs,
                                           make_sidecar, write_sidecar)

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out: list[ModelEntry] = []
    data = good_onnx.read_bytes()
    rng = np.random.default_rng(3)

    def add(name: str, kind: str, note: str) -> Path:
        out.append(ModelEntry(name, folder / name, kind, note))
        return folder / name

    add("corrupt.onnx", "onnx", "random bytes").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    add("truncated.onnx", "onnx", "first half of a good ONNX").write_bytes(data[: len(data) // 2])
    add("empty.onnx", "onnx", "0 bytes").write_bytes(b"")
    from tests.conftest import make_tiny_onnx

    make_tiny_onnx(add("no_card.onnx", "onnx", "valid ONNX without the ffd model card"), card=False)

    info = describe_onnx(good_onnx)
    if info.card is None:
        raise ValueError(f"{good_onnx} has no card")
    old_env = EngineEnv(trt_version="8.2.1", gpu_name="NVIDIA Tesla T4", compute_capability="7.5")
    engine = add("other_version.engine", "engine", "sidecar: built by TensorRT 8.2.1 on a T4")
    engine.write_bytes(b"\x00not-a-real-engine\x00" * 64)
    inputs = key_inputs(info.sha256, BatchProfile(), BuildOptions(precision="fp32"), old_env, info.input_name)
    import hashlib

    write_sidecar(engine, make_sidecar(inputs, info.card, hashlib.sha256(engine.read_bytes()).hexdigest(), good_onnx))
    add("no_sidecar.engine", "engine", "engine bytes without a sidecar").write_bytes(b"\x00" * 256)

    if torch_entries:
        import torch

        other = save_tiny_checkpoint(add("other_arch.pt", "ckpt", "student_tiny weights labelled student_small"))
        blob = torch.load(other, weights_only=True)
        blob["model_name"] = "student_small"
        torch.save(blob, other)
        torch.save({"state_dict": {"w": torch.zeros(2)}},
                   add("not_ffd.pt", "ckpt", "a torch file, not an ffd checkpoint"))
        torch.save({"format": "ffd-ckpt-1", "model_name": "student_tiny"},
                   add("incomplete.pt", "ckpt", "ffd format tag, fields missing"))
        add("corrupt.pt", "ckpt", "random bytes").write_bytes(rng.integers(0, 256, 2048, dtype=np.uint8).tobytes())
        add("empty.pt", "ckpt", "0 bytes").write_bytes(b"")
        marker = folder / MARKER
        add("malicious_pickle.pt", "ckpt", "raw pickle whose __reduce__ creates a file").write_bytes(
            pickle.dumps({"format": "ffd-ckpt-1", "x": Malicious(marker)}))
        torch.save({"format": "ffd-ckpt-1", "state_dict": {}, "x": Malicious(marker)},
                   add("malicious_torch.pt", "ckpt", "torch zip file holding a malicious object"))
        if marker.exists():  # writing must not have executed it either
            marker.unlink()
    return out


# --- class 2: hostile model cards, broken I/O contracts, absurd checkpoint kwargs ------------------
def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def hostile_cards(size: int = 32) -> list[tuple[str, str, str]]:
    """``(name, card JSON text, note)``: cards with a wrong type, unknown value, absurd bound, NaN or hostile
    structure in every field the runtime uses. Each must be refused wherever a card is loaded."""
    import json

    from edge.spec import ModelCard, PreprocessSpec

    good = ModelCard("tiny_mean", spec=PreprocessSpec(size=size)).to_dict()

    def card(note, **change):
        d = json.loads(json.dumps(good))
        for k, v in change.items():
            if k.startswith("spec_"):
                d["spec"][k[5:]] = v
            else:
                d[k] = v
        return json.dumps(d), note  # NaN/Infinity come out as JSON's non-standard tokens, as a hostile file has them

    nan, inf = float("nan"), float("inf")
    out = {
        "threshold_string": card("threshold '0.5'", threshold="0.5"),
        "threshold_list": card("threshold [0.5]", threshold=[0.5]),
        "threshold_null": card("threshold null", threshold=None),
        "threshold_nan": card("threshold NaN", threshold=nan),
        "threshold_2": card("threshold 2.0 (outside [0, 1])", threshold=2.0),
        "threshold_negative": card("threshold -0.1", threshold=-0.1),
        "threshold_bool": card("threshold true", threshold=True),
        "band_inf": card("uncertain_band Infinity", uncertain_band=inf),
        "size_100000": card("size 100000 (a 30 GB allocation per batch)", spec_size=100000),
        "size_float": card(f"size {float(size)} (a float)", spec_size=float(size)),
        "size_zero": card("size 0", spec_size=0),
        "size_string": card(f"size '{size}'", spec_size=str(size)),
        "size_huge_int": (json.dumps(good).replace(f'"size": {size}', '"size": ' + "9" * 5000),
                          "size with 5000 digits"),
        "interp_unknown": card("interpolation 'nearest'", spec_interpolation="nearest"),
        "detector_unknown": card("detector 'mtcnn'", spec_detector="mtcnn"),
        "crop_unknown": card("crop_mode 'circle'", spec_crop_mode="circle"),
        "mean_nan": card("mean [NaN, 0.4, 0.4]", spec_mean=[nan, 0.4, 0.4]),
        "mean_short": card("mean of two values", spec_mean=[0.4, 0.4]),
        "std_zero": card("std [0, 0.2, 0.2]", spec_std=[0.0, 0.2, 0.2]),
        "std_negative": card("std [-0.2, 0.2, 0.2]", spec_std=[-0.2, 0.2, 0.2]),
        "std_nan": card("std [NaN, 0.2, 0.2]", spec_std=[nan, 0.2, 0.2]),
        "margin_negative": card("margin -1", spec_margin=-1.0),
        "margin_inf": card("margin Infinity", spec_margin=inf),
        "margin_nan": card("margin NaN", spec_margin=nan),
        "margin_huge": card("margin 1e6", spec_margin=1e6),
        "det_threshold_nan": card("det_score_threshold NaN", spec_det_score_threshold=nan),
        "spec_version_99": card("spec version 99 (a future ffd)", spec_version=99),
        "spec_unknown_field": card("spec field 'gamma'", spec_gamma=2.2),
        "spec_not_object": card("spec is a string", spec="RGB 128"),
        "output_logits": card("output 'logits' (not P(fake))", output="logits"),
        "name_number": card("name 42", name=42),
        "extra_list": card("extra is a list", extra=[1, 2]),
        "deep_nesting": (json.dumps(good)[:-1] + ', "x": ' + _deep(100_000) + "}",
                         "100000 nested lists (RecursionError)"),
        "deep_in_extra": (json.dumps({**good, "extra": {"e": "__DEEP__"}}).replace('"__DEEP__"', _deep(40)),
                          "40 nested lists inside extra"),
        "huge_card": (json.dumps({**good, "extra": {"pad": "x" * (3 << 20)}}), "a 3 MB card"),
        "not_object": ("[0.5, 128]", "a JSON list, not an object"),
        "not_json": ("{'name': 'x'", "not JSON"),
        "empty": ("", "an empty card"),
    }
    return [(k, text, note) for k, (text, note) in out.items()]


def write_card_onnx(path: Path, card_text: str, size: int = 32) -> Path:
    """The tiny classifier with ``card_text`` (any string) as its ``ffd.card`` metadata."""
    import onnx

    from edge.spec import META_KEY
    from tests.conftest import make_tiny_onnx

    make_tiny_onnx(path, size=size, card=False)
    m = onnx.load(str(path))
    del m.metadata_props[:]
    m.metadata_props.add(key=META_KEY, value=card_text)
    onnx.save(m, str(path))
    return path


def write_card_engine(path: Path, card_text: str, good_onnx: Path) -> Path:
    """An engine file plus a sidecar whose key is right but whose card is ``card_text`` (spliced in as text)."""
    import hashlib

    from edge.runtime.engine_cache import (SIDECAR_FORMAT, BatchProfile, BuildOptions, EngineEnv, cache_key,
                                           describe_onnx, key_inputs, sidecar_path)

    info = describe_onnx(good_onnx)
    path.write_bytes(b"\x00hostile-card-engine\x00" * 32)
    env = EngineEnv(trt_version="10.3.0", gpu_name="NVIDIA Orin", compute_capability="8.7")
    inputs = key_inputs(info.sha256, BatchProfile(), BuildOptions(precision="fp32"), env, info.input_name)
    import json

    head = json.dumps({"format": SIDECAR_FORMAT, "key": cache_key(inputs), "inputs": inputs,
                       "engine_sha256": hashlib.sha256(path.read_bytes()).hexdigest()})
    sidecar_path(path).write_text(head[:-1] + ', "card": ' + (card_text or '""') + "}")
    return path


def write_card_checkpoint(path: Path, good_ckpt: Path, card_text: str) -> Path:
    """A copy of a real ffd checkpoint whose card JSON is ``card_text``."""
    import torch

    blob = torch.load(good_ckpt, weights_only=True)
    blob["card"] = card_text
    torch.save(blob, path)
    return path


def write_kwargs_checkpoint(path: Path, good_ckpt: Path, model_name: str, kwargs_json: str) -> Path:
    """A copy of a real ffd checkpoint relabelled ``model_name`` with ``model_kwargs`` = ``kwargs_json``: it passes
    the weights-only loader; building the model it asks for must be refused before anything is allocated."""
    import torch

    blob = torch.load(good_ckpt, weights_only=True)
    blob["model_name"], blob["model_kwargs"] = model_name, kwargs_json
    torch.save(blob, path)
    return path


HOSTILE_KWARGS = (  # (file, model, model_kwargs JSON, note)
    ("kwargs_vit_3g.pt", "vit_tiny_patch8",
     '{"img_size": 1024, "patch_size": 2, "embed_dim": 2048, "depth": 48, "num_heads": 64}',
     "a ViT of 3 G parameters (11 GiB) within every per-kwarg bound"),
    ("kwargs_teacher_19g.pt", "teacher_dual",
     '{"spatial_widths": [2048, 2048, 2048, 2048, 2048, 2048, 2048, 2048], '
     '"spatial_depths": [16, 16, 16, 16, 16, 16, 16, 16], '
     '"freq_widths": [2048, 2048, 2048, 2048], "freq_depths": [16, 16, 16, 16]}',
     "a teacher of 19 G parameters (72 GiB)"),
    ("kwargs_width_1e6.pt", "vit_tiny_patch8", '{"embed_dim": 1000000, "num_heads": 1}',
     "embed_dim 1e6 (a 100 GB model)"),
    ("kwargs_unknown.pt", "student_tiny", '{"widths": [100000, 100000, 100000, 100000]}',
     "a keyword the entry point does not take from a file"),
    ("kwargs_string.pt", "mobilenetv2_100", '{"drop_rate": "0.2"}', "drop_rate as a string"),
    ("kwargs_null.pt", "vit_tiny_patch8", '{"num_classes": null}', "num_classes null"),
    ("kwargs_negative.pt", "vit_tiny_patch8", '{"depth": -1}', "depth -1"),
    ("kwargs_not_object.pt", "student_tiny", "[1, 2, 3]", "model_kwargs a JSON list"),
    ("kwargs_deep.pt", "student_tiny", '{"x": ' + _deep(100_000) + "}", "100000 nested lists in model_kwargs"),
    ("kwargs_unknown_model.pt", "resnet_9000", "{}", "a model the registry does not have"),
)


def contract_onnx(path: Path, kind: str, size: int = 32) -> Path:
    """A real ONNX classifier (with a valid card) that breaks the model I/O contract one way:

    ``input_uint8`` / ``input_fp16``: the image input is not float32; ``output_int64``: the score is an
    integer; ``output_nan``, ``output_inf``: non-finite scores; ``output_logits``: scores far outside
    [0, 1]; ``output_two``: two values per face."""
    import onnx
    from onnx import TensorProto, helper

    from edge.spec import META_KEY, ModelCard, PreprocessSpec

    in_type = {"input_uint8": TensorProto.UINT8, "input_fp16": TensorProto.FLOAT16}.get(kind, TensorProto.FLOAT)
    out_type = TensorProto.INT64 if kind == "output_int64" else TensorProto.FLOAT
    inp = helper.make_tensor_value_info("input", in_type, ["batch", 3, size, size])
    out = helper.make_tensor_value_info("score", out_type, ["batch", 2] if kind == "output_two" else ["batch"])
    nodes, inits = [], [helper.make_tensor("w", TensorProto.FLOAT, [], [4.0])]
    x = "input"
    if in_type != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", ["input"], ["xf"], to=TensorProto.FLOAT))
        x = "xf"
    nodes += [helper.make_node("ReduceMean", [x], ["m"], axes=[1, 2, 3], keepdims=0),
              helper.make_node("Mul", ["m", "w"], ["z"])]
    if kind == "output_logits":
        inits.append(helper.make_tensor("b", TensorProto.FLOAT, [], [7.0]))
        nodes.append(helper.make_node("Add", ["z", "b"], ["score"]))
    elif kind in ("output_nan", "output_inf"):
        bad = float("nan") if kind == "output_nan" else float("inf")
        inits.append(helper.make_tensor("b", TensorProto.FLOAT, [], [bad]))
        nodes += [helper.make_node("Sigmoid", ["z"], ["p"]), helper.make_node("Add", ["p", "b"], ["score"])]
    elif kind == "output_two":
        inits.append(helper.make_tensor("ax", TensorProto.INT64, [1], [1]))
        nodes += [helper.make_node("Sigmoid", ["z"], ["p"]), helper.make_node("Unsqueeze", ["p", "ax"], ["p1"]),
                  helper.make_node("Concat", ["p1", "p1"], ["score"], axis=1)]
    elif kind == "output_int64":
        nodes += [helper.make_node("Sigmoid", ["z"], ["p"]),
                  helper.make_node("Cast", ["p"], ["score"], to=TensorProto.INT64)]
    else:
        nodes.append(helper.make_node("Sigmoid", ["z"], ["score"]))
    graph = helper.make_graph(nodes, f"contract_{kind}", [inp], [out], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {META_KEY: ModelCard(f"contract_{kind}", spec=PreprocessSpec(size=size)).to_json()})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


CONTRACT_KINDS = {  # kind -> (when it is refused, note)
    "input_uint8": ("open", "uint8 image input"),
    "input_fp16": ("open", "float16 image input"),
    "output_int64": ("open", "int64 score output"),
    "output_nan": ("infer", "NaN scores"),
    "output_inf": ("infer", "infinite scores"),
    "output_logits": ("infer", "logits (7..11) instead of probabilities"),
    "output_two": ("infer", "two values per face"),
}


def build_hostile_model_corpus(folder: str | Path, good_onnx: Path, good_ckpt: Path | None = None) -> list[ModelEntry]:
    """Class 2 (and the detector of class 4): every hostile card as an ONNX, an engine sidecar and (with
    ``good_ckpt``) a checkpoint; ONNX files that break the I/O contract; checkpoints with absurd
    ``model_kwargs``; models that are not face detectors given as the detector."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out: list[ModelEntry] = []
    for name, text, note in hostile_cards():
        out.append(ModelEntry(f"card_{name}.onnx", write_card_onnx(folder / f"card_{name}.onnx", text), "onnx",
                              f"ONNX card: {note}"))
        out.append(ModelEntry(f"card_{name}.engine", write_card_engine(folder / f"card_{name}.engine", text, good_onnx),
                              "engine", f"engine sidecar card: {note}"))
        if good_ckpt is not None:
            out.append(ModelEntry(f"card_{name}.pt", write_card_checkpoint(folder / f"card_{name}.pt", good_ckpt, text),
                                  "ckpt", f"checkpoint card: {note}"))
    for kind, (when, note) in CONTRACT_KINDS.items():
        out.append(ModelEntry(f"contract_{kind}.onnx", contract_onnx(folder / f"contract_{kind}.onnx", kind), "onnx",
                              f"I/O contract: {note}", check=when))
    if good_ckpt is not None:
        for fname, model, kw, note in HOSTILE_KWARGS:
            out.append(ModelEntry(fname, write_kwargs_checkpoint(folder / fname, good_ckpt, model, kw), "ckpt",
                                  f"model_kwargs: {note}"))
    import shutil

    shutil.copy(good_onnx, folder / "classifier_as_detector.onnx")
    out.append(ModelEntry("classifier_as_detector.onnx", folder / "classifier_as_detector.onnx", "detector",
                          "a forgery classifier given as the YuNet face detector", cls=4))
    (folder / "text_as_detector.onnx").write_text("not a model\n")
    out.append(ModelEntry("text_as_detector.onnx", folder / "text_as_detector.onnx", "detector",
                          "a text file given as the YuNet face detector", cls=4))
    return out


# --- class 4: bad settings ---------------------------------------------------------------------------
@dataclass(frozen=True)
class SettingCase:
    """An ``ffd`` command line with one bad number (an option or an environment variable).

    ``args`` may hold ``{images}``, ``{video}``, ``{model}``, ``{ckpt}``, ``{out}`` and ``{classifier}``;
    the run must exit 3 (2: a usage error) with one ``error:`` line that contains ``names`` (the option or
    variable) and create nothing under ``{out}``."""

    name: str
    args: tuple
    names: str
    env: tuple = ()
    cls: int = 4


def _c(name, *args, names, env=()):
    return SettingCase(name, tuple(args), names, tuple(env))


_DET = ("detect", "{images}", "-m", "{model}", "-o", "{out}/d.jsonl")
_SCR = ("screen", "{images}", "-m", "{model}", "--db", "{out}/s.sqlite", "--no-progress")
_EXT = ("faces", "extract", "{images}", "{out}/faces", "--no-progress")
SETTING_CASES = (
    _c("detect --threads 100000", *_DET, "--threads", "100000", names="--threads"),
    _c("detect --threads 2000", *_DET, "--threads", "2000", names="--threads"),
    _c("detect --threads 0", *_DET, "--threads", "0", names="--threads"),
    _c("detect --batch-size 10^9", *_DET, "--batch-size", "1000000000", names="--batch-size"),
    _c("detect --max-faces -1", *_DET, "--max-faces", "-1", names="--max-faces"),
    _c("detect --every 0", "detect", "{video}", "-m", "{model}", "-o", "{out}/d.jsonl", "--every", "0",
       names="--every"),
    _c("detect --det-size 100000", "detect", "{video}", "-m", "{model}", "-o", "{out}/d.jsonl", "--det-size", "100000",
       names="--det-size"),
    _c("detect --detector-model CLASSIFIER", *_DET, "--detector-model", "{classifier}", names="not a YuNet"),
    _c("FFD_YUNET_MODEL=CLASSIFIER screen", *_SCR, names="not a YuNet", env=(("FFD_YUNET_MODEL", "{classifier}"),)),
    _c("screen --every-s nan", *_SCR, "--every-s", "nan", names="--every-s"),
    _c("screen --every-s inf", *_SCR, "--every-s", "inf", names="--every-s"),
    _c("screen --every-s 0", *_SCR, "--every-s", "0", names="--every-s"),
    _c("screen --every-s -1", *_SCR, "--every-s", "-1", names="--every-s"),
    _c("screen -j 100000", *_SCR, "-j", "100000", names="--workers"),
    _c("screen --frames 0", *_SCR, "--frames", "0", names="--frames"),
    _c("screen --max-faces 100000", *_SCR, "--max-faces", "100000", names="--max-faces"),
    _c("FFD_DECODE_TIMEOUT_S=inf screen", *_SCR, names="FFD_DECODE_TIMEOUT_S", env=(("FFD_DECODE_TIMEOUT_S", "inf"),)),
    _c("FFD_DECODE_TIMEOUT_S=nan screen", *_SCR, names="FFD_DECODE_TIMEOUT_S", env=(("FFD_DECODE_TIMEOUT_S", "nan"),)),
    _c("FFD_DECODE_TIMEOUT_S=-5 extract", *_EXT, names="FFD_DECODE_TIMEOUT_S", env=(("FFD_DECODE_TIMEOUT_S", "-5"),)),
    _c("FFD_DECODE_TIMEOUT_S=abc detect", *_DET, names="FFD_DECODE_TIMEOUT_S", env=(("FFD_DECODE_TIMEOUT_S", "abc"),)),
    _c("FFD_DECODE_TIMEOUT_S=1e999 extract", *_EXT, names="FFD_DECODE_TIMEOUT_S",
       env=(("FFD_DECODE_TIMEOUT_S", "1e999"),)),
    _c("extract --size 100000", *_EXT, "--size", "100000", names="--size"),
    _c("extract --margin nan", *_EXT, "--margin", "nan", names="--margin"),
    _c("extract --margin -1", *_EXT, "--margin", "-1", names="--margin"),
    _c("extract -j 10000", *_EXT, "-j", "10000", names="--workers"),
    _c("extract --every 0", *_EXT, "--every", "0", names="--every"),
    _c("bench --threads 2000", "bench", "{model}", "-o", "{out}/bench", "--threads", "2000", names="--threads"),
    _c("bench --batch-sizes 1,100000", "bench", "{model}", "-o", "{out}/bench", "--batch-sizes", "1,100000",
       names="--batch-sizes"),
    _c("bench --iters 0", "bench", "{model}", "-o", "{out}/bench", "--iters", "0", names="--iters"),
    _c("build-engine --max-batch 100000", "build-engine", "{model}", "-o", "{out}/m.engine", "--max-batch", "100000",
       names="--max-batch"),
    _c("train teacher --lr inf", "train", "teacher", "--data", "x={images}", "-o", "{out}/run", "--lr", "inf",
       names="--lr"),
    _c("train student --batch-size 10^9", "train", "student", "--data", "x={images}", "-o", "{out}/run",
       "--batch-size", "1000000000", names="--batch-size"),
    _c("adapt --alpha nan", "adapt", "{ckpt}", "--target", "{images}", "-o", "{out}/a.pt", "--alpha", "nan",
       names="--alpha"),
)


# --- class 1: outputs that overwrite inputs or each other ---------------------------------------------
@dataclass(frozen=True)
class OutputCase:
    """An ``ffd`` command line whose output would destroy a file: the run must exit 3 with one
    ``error:`` line and leave every file of its folder as it was (``setup``: what the folder holds
    before; ``{w}`` is the case's folder, ``{model}`` the classifier, ``{yunet}`` the face detector)."""

    name: str
    setup: tuple  # (relative path, source): source "image", "video", "db", "text", "model" or "crop"
    args: tuple
    cls: int = 1


OUTPUT_CASES = (
    OutputCase("detect photo.jpg -o photo.jpg", (("photo.jpg", "image"),),
               ("detect", "{w}/photo.jpg", "-m", "{model}", "-o", "{w}/photo.jpg")),
    OutputCase("detect photo.jpg -o LINK-TO-photo.jpg", (("photo.jpg", "image"), ("link.jsonl", "link:photo.jpg")),
               ("detect", "{w}/photo.jpg", "-m", "{model}", "-o", "{w}/link.jsonl")),
    OutputCase("detect -o model.onnx", (("photo.jpg", "image"), ("m.onnx", "model")),
               ("detect", "{w}/photo.jpg", "-m", "{w}/m.onnx", "-o", "{w}/m.onnx")),
    OutputCase("detect clip.mp4 --save-video clip.mp4", (("clip.mp4", "video"),),
               ("detect", "{w}/clip.mp4", "-m", "{model}", "--save-video", "{w}/clip.mp4", "-o", "{w}/d.jsonl")),
    OutputCase("detect -o and --save-video one file", (("clip.mp4", "video"),),
               ("detect", "{w}/clip.mp4", "-m", "{model}", "--save-video", "{w}/out.mp4", "-o", "{w}/out.mp4")),
    OutputCase("detect -m typo keeps an existing -o", (("photo.jpg", "image"), ("faces.jsonl", "text")),
               ("detect", "{w}/photo.jpg", "-m", "{w}/typo.onnx", "-o", "{w}/faces.jsonl")),
    OutputCase("screen --db s.json --export s.json", (("A/photo.jpg", "image"), ("s.json", "db")),
               ("screen", "{w}/A", "-m", "{model}", "--db", "{w}/s.json", "--export", "{w}/s.json", "--no-progress")),
    OutputCase("screen --report on the db", (("A/photo.jpg", "image"), ("s.db", "db")),
               ("screen", "{w}/A", "-m", "{model}", "--db", "{w}/s.db", "--report", "{w}/s.db", "--no-progress")),
    OutputCase("screen --db on an archive file", (("A/clip.mp4", "video"),),
               ("screen", "{w}/A", "-m", "{model}", "--db", "{w}/A/clip.mp4", "--no-progress")),
    OutputCase("faces extract photos photos --overwrite",
               (("photos/a.jpg", "image"), ("photos/crops/mine.png", "crop")),
               ("faces", "extract", "{w}/photos", "{w}/photos", "--overwrite", "--detector-model", "{yunet}",
                "--no-progress")),
    OutputCase("faces extract photos photos/crops", (("photos/a.jpg", "image"), ("photos/crops/mine.png", "crop")),
               ("faces", "extract", "{w}/photos", "{w}/photos/crops", "--overwrite", "--detector-model", "{yunet}",
                "--no-progress")),
)
