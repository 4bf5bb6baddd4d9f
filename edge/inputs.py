"""Input listing and file names, torch-free: the one folder walk of ``ffd screen``, ``ffd detect`` and
``ffd faces extract``, and the two safe forms of a file name.

:func:`list_inputs` walks files and folders and accounts for **every** file under them: each is
either taken (``files``: ``(path, kind)``, kind ``image`` or ``video``) or listed in ``skipped`` with
a reason from :data:`REASONS` (an unsupported extension, a format the installed OpenCV cannot decode,
a hidden file, a symlink loop, a broken link, a FIFO, a folder that cannot be listed...). Symlinked
sub-folders are followed; a folder reached again (a loop, or a second link to a folder already
walked) is recognised by its ``(st_dev, st_ino)`` and skipped with its reason. Hidden folders
(``.git``) are one skipped entry, not walked.

File names are handled as the bytes they are: on POSIX a name that is not valid UTF-8 arrives as a
``str`` with lone surrogates (``os.fsdecode``), which opens the file fine but cannot be encoded as
UTF-8 text. :func:`safe_text` is the form stored in SQLite, CSV manifests and JSON (invalid bytes as
``\\xNN``; valid names unchanged), :func:`printable` the form printed on a terminal (control
characters, escape sequences and bidi overrides escaped as well).
"""
from __future__ import annotations

import errno
import os
import stat as stat_mod
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable

from .errors import InputError

# Why a file under an input is not scored (the keys of Listing.counts()).
UNSUPPORTED = "unsupported extension"
NO_DECODER = "no decoder for this format in the installed OpenCV"
HIDDEN = "hidden file or folder"
SYMLINK_LOOP = "symlink loop"
SEEN_FOLDER = "folder already listed (another link to it)"
BROKEN_LINK = "broken symlink"
NOT_REGULAR = "not a regular file (FIFO, socket or device)"
UNLISTABLE = "folder cannot be listed"
UNREADABLE = "cannot stat the file"
VIDEO_IN_FOLDER = "video inside a folder (ffd detect reads a video given by name; ffd screen scores folders)"
OUTPUT_FOLDER = "the output folder"
REASONS = (UNSUPPORTED, NO_DECODER, HIDDEN, SYMLINK_LOOP, SEEN_FOLDER, BROKEN_LINK, NOT_REGULAR, UNLISTABLE,
           UNREADABLE, VIDEO_IN_FOLDER, OUTPUT_FOLDER)


# --- names -----------------------------------------------------------------------------------------
def safe_text(s: str) -> str:
    """``s`` when it encodes as UTF-8, else the same text with each undecodable byte as ``\\xNN``.

    A file name that is not valid UTF-8 (``b"caf\\xe9.jpg"``, read by Python as ``"caf\\udce9.jpg"``)
    becomes ``"caf\\\\xe9.jpg"``: storable in SQLite and CSV, readable, stable across runs."""
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        pass
    try:
        return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # surrogates that are not escaped bytes (from JSON, say)
        return s.encode("utf-8", "backslashreplace").decode("utf-8")


def printable(s: object) -> str:
    """``str(s)`` fit for a terminal: undecodable bytes, control characters (``\\x1b[...``, ``\\r``,
    ``\\n``, C1 codes) and invisible format characters (bidi overrides) escaped as ``\\xNN``/``\\uNNNN``."""
    text = safe_text(str(s))
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def name_error(path: str | os.PathLike, e: OSError) -> InputError:
    """An OSError of a path (name too long, permission denied, ...) as an InputError naming it printably."""
    return InputError(f"cannot read {'the name' if e.errno == errno.ENAMETOOLONG else 'the path'}: {e.strerror or e}",
                      path=printable(os.fspath(path)), fix="rename or move the file, or pass another path")


# --- kinds -----------------------------------------------------------------------------------------
BASE_IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".dib", ".webp", ".tif", ".tiff",
                             ".pgm", ".ppm", ".pbm", ".pnm", ".jp2", ".j2k"})  # every OpenCV build decodes these
# formats only some OpenCV builds decode: taken when the installed one has the codec, else NO_DECODER
OPTIONAL_IMAGE_EXTS = frozenset({".avif", ".heic", ".heif", ".jxl"})
IMAGE_EXTS = BASE_IMAGE_EXTS | OPTIONAL_IMAGE_EXTS
VIDEO_EXTS = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp",
                        ".3g2", ".ts", ".mts", ".m2ts", ".m2t", ".mxf", ".ogv", ".vob", ".asf", ".f4v", ".gif"})


@lru_cache(maxsize=None)
def has_image_codec(ext: str) -> bool:
    """Whether the installed OpenCV has a codec for the image extension ``ext`` (``.avif``: libavif builds)."""
    ext = ext.lower()
    if ext not in OPTIONAL_IMAGE_EXTS:
        return ext in BASE_IMAGE_EXTS
    import cv2

    try:
        return bool(cv2.haveImageWriter("x" + ext))  # codecs are registered by extension, reader and writer alike
    except cv2.error:
        return False


def media_kind(path: str | os.PathLike) -> str | None:
    """``"image"`` | ``"video"`` by extension (case-insensitive), or None."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    return "video" if ext in VIDEO_EXTS else "image" if ext in IMAGE_EXTS else None


# --- the walk --------------------------------------------------------------------------------------
@dataclass
class Listing:
    """What :func:`list_inputs` found: ``files`` taken and ``skipped`` ``(path, reason)``, both sorted."""

    files: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Skipped files per reason."""
        out: dict[str, int] = {}
        for _, r in self.skipped:
            out[r] = out.get(r, 0) + 1
        return out

    def describe(self, limit: int = 20) -> list[dict]:
        """The first ``limit`` skipped files as ``{path, reason}`` with the path in its :func:`safe_text` form."""
        return [{"path": safe_text(str(p)), "reason": r} for p, r in self.skipped[:limit]]

    def summary(self) -> str:
        """``"3 skipped (2 unsupported extension, 1 symlink loop)"`` or ``"0 skipped"``."""
        c = self.counts()
        inner = ", ".join(f"{n} {r.split(' (')[0]}" for r, n in sorted(c.items(), key=lambda kv: -kv[1]))
        return f"{len(self.skipped)} skipped" + (f" ({inner})" if inner else "")


def _key(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def list_inputs(paths: Iterable[str | os.PathLike], *, images: bool = True, videos: bool = True,
                exclude: Iterable[str | os.PathLike] = (), sidecar: Callable[[Path], bool] | None = None,
                ) -> Listing:
    """Every file under ``paths``: taken (image/video of the wanted kinds) or skipped with a reason.

    A file given by name is taken as it is, whatever its extension (``kind`` ``other`` when unknown:
    the caller records why it cannot read it), except an image format without a decoder. Inside
    folders: images and/or videos by extension (``videos=False``: videos are skipped with
    :data:`VIDEO_IN_FOLDER`); ``exclude``: folders not walked (an output inside the input);
    ``sidecar(path)``: files read with another (landmark files), neither taken nor skipped.
    A path that does not exist is an InputError.
    """
    out = Listing()
    excl: set[tuple[int, int]] = set()
    for e in exclude:
        try:
            excl.add(_key(os.stat(e)))
        except OSError:
            pass
    seen: set[tuple[int, int]] = set()
    for p in map(Path, paths):  # in the order given; each folder's files sorted
        sub = Listing()
        _list_one(p, sub, images, videos, excl, seen, sidecar)
        sub.files.sort(key=lambda t: str(t[0]))
        sub.skipped.sort(key=lambda t: str(t[0]))
        out.files += sub.files
        out.skipped += sub.skipped
    return out


def _list_one(p: Path, out: Listing, images: bool, videos: bool, excl: set, seen: set, sidecar) -> None:
    try:
        st = p.stat()
    except FileNotFoundError:
        if p.is_symlink():
            raise InputError("broken symlink", path=printable(p), fix="fix the link or pass the file") from None
        raise InputError("no such file or folder", path=printable(p), fix="check the path") from None
    except OSError as e:  # name too long, symlink loop, permission denied
        raise name_error(p, e) from e
    if stat_mod.S_ISDIR(st.st_mode):
        if _key(st) in seen:  # the same folder given twice
            return
        seen.add(_key(st))
        _walk(p, out, images, videos, excl, seen, {_key(st)}, sidecar)
    elif not stat_mod.S_ISREG(st.st_mode):  # a FIFO would block the decoder forever
        out.skipped.append((p, NOT_REGULAR))
    else:
        kind = media_kind(p) or "other"
        if kind == "image" and not has_image_codec(p.suffix):
            out.skipped.append((p, NO_DECODER))
        else:
            out.files.append((p, kind))


def _walk(folder: Path, out: Listing, images: bool, videos: bool, excl: set, seen: set, ancestors: set,
          sidecar) -> None:
    try:
        with os.scandir(folder) as it:
            entries = list(it)
    except OSError:
        out.skipped.append((folder, UNLISTABLE))
        return
    for e in entries:
        p = folder / e.name
        if e.name.startswith("."):
            out.skipped.append((p, HIDDEN))
            continue
        try:
            st = os.stat(p)  # follows symlinks
        except FileNotFoundError:
            out.skipped.append((p, BROKEN_LINK if e.is_symlink() else UNREADABLE))
            continue
        except OSError as err:
            out.skipped.append((p, SYMLINK_LOOP if err.errno == errno.ELOOP else UNREADABLE))
            continue
        if stat_mod.S_ISDIR(st.st_mode):
            k = _key(st)
            if k in excl:
                out.skipped.append((p, OUTPUT_FOLDER))
            elif k in ancestors:
                out.skipped.append((p, SYMLINK_LOOP))
            elif k in seen:
                out.skipped.append((p, SEEN_FOLDER))
            else:
                seen.add(k)
                _walk(p, out, images, videos, excl, seen, ancestors | {k}, sidecar)
            continue
        if not stat_mod.S_ISREG(st.st_mode):
            out.skipped.append((p, NOT_REGULAR))
            continue
        kind = media_kind(p)
        if kind == "image" and images:
            if has_image_codec(p.suffix):
                out.files.append((p, kind))
            else:
                out.skipped.append((p, NO_DECODER))
        elif kind == "video" and videos:
            out.files.append((p, kind))
        elif kind == "video" and images:
            out.skipped.append((p, VIDEO_IN_FOLDER))
        elif sidecar is None or not sidecar(p):
            out.skipped.append((p, UNSUPPORTED))
