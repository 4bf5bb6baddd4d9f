"""Outputs that never overwrite an input or each other, and never leave a half-written file.

Every command that writes a user-named file goes through here:

* :func:`check_outputs` refuses (with :class:`~edge.errors.ConfigError`, naming both paths) an
  output that *is* an input (resolved real paths, symlinks and hard links included), two
  outputs that are one file, and an output folder inside an input folder or around it
  (``ffd faces extract photos photos``). It runs before any output is opened.
* :func:`atomic_open` / :func:`atomic_write_text` / :func:`atomic_write_bytes` write to a
  temporary file in the same folder and ``os.replace`` it over the target only when the
  write completed: a full disk or a crash leaves the previous file as it was.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterable, Iterator, Mapping

from .errors import ConfigError

PathLike = str | os.PathLike


def real_path(p: PathLike) -> Path:
    """Absolute path with every symlink resolved (the file need not exist)."""
    return Path(os.path.realpath(os.path.abspath(os.fspath(p))))


def _same(a: Path, b: Path) -> bool:
    if a == b:
        return True
    try:  # hard links, bind mounts, case-insensitive file systems
        return os.path.samefile(a, b)
    except OSError:
        return False


def _inside(child: Path, parent: Path) -> bool:
    return parent in child.parents


def check_outputs(inputs: Iterable[PathLike | None], outputs: Mapping[str, PathLike | None], *,
                  folders: Iterable[str] = ()) -> None:
    """Refuse outputs that would overwrite an input or each other.

    ``inputs``: files and folders the run reads (``None``, ``"-"``, URIs and device numbers are
    ignored). ``outputs``: option name -> path (``None`` skipped). An output equal to an input,
    two outputs that are one file, or a file output inside an input folder that would be read
    as media are refused. Outputs named in ``folders`` are output *folders*: they may neither lie
    inside an input folder nor contain an input.
    """
    from .media import is_image, is_video

    ins = [(str(p), real_path(p)) for p in inputs if p is not None and _is_path(p)]
    outs = [(name, str(p), real_path(p)) for name, p in outputs.items() if p is not None and _is_path(p)]
    folders = set(folders)
    for name, shown, out in outs:
        for ishown, inp in ins:
            if _same(out, inp):
                raise ConfigError(f"the output {name} {shown} is the input {ishown}: writing it would destroy "
                                  "the input", path=shown, fix=f"give {name} another path")
            if name in folders:
                if _inside(out, inp) or _inside(inp, out):
                    where = "inside the input" if _inside(out, inp) else "around the input"
                    raise ConfigError(f"the output folder {name} {shown} lies {where} {ishown}", path=shown,
                                      fix=f"give {name} a folder outside {ishown} (e.g. next to it)")
            elif _inside(out, inp) and inp.is_dir() and (is_image(out) or is_video(out)):
                raise ConfigError(f"the output {name} {shown} lies inside the input folder {ishown} and would "
                                  "be read as an input", path=shown, fix=f"write {name} outside {ishown}")
    for i, (n1, s1, o1) in enumerate(outs):
        for n2, s2, o2 in outs[i + 1:]:
            if _same(o1, o2):
                raise ConfigError(f"the outputs {n1} {s1} and {n2} {s2} are the same file", path=s1,
                                  fix=f"give {n1} and {n2} different paths")


def _is_path(p: PathLike) -> bool:
    s = os.fspath(p)
    if isinstance(s, bytes):
        s = os.fsdecode(s)
    return bool(s) and s != "-" and "://" not in s and not s.isdigit() and not s.startswith("/dev/")


def temp_path(path: PathLike) -> Path:
    """A fresh temporary file beside ``path`` (same folder, same suffix: writers pick formats by suffix)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError("the output is a folder", path=path, fix="give a file name")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem[:40]}.", suffix=f".tmp{path.suffix}",
                                   dir=path.parent or ".")
    except OSError as e:
        raise ConfigError(f"cannot write the output: {e.strerror or e}", path=path,
                          fix="use an existing, writable folder with free space") from e
    os.close(fd)
    return Path(tmp)


def commit(tmp: PathLike, path: PathLike) -> None:
    """Move a finished temporary file over ``path`` (keeping ``path``'s permissions where it exists)."""
    try:
        mode = os.stat(path).st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    os.chmod(tmp, mode)
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "w", *, fsync: bool = True, **kw) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on a clean exit it replaces ``path``, on an error it is removed."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes only ('w' or 'wb'), got {mode!r}")
    path = Path(path)
    if not path.parent.is_dir():
        raise ConfigError("the folder of the output does not exist", path=path.parent,
                          fix="create the folder or choose another path")
    tmp = temp_path(path)
    try:
        with open(tmp, mode, **kw) as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        commit(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` all or nothing."""
    with atomic_open(path, "w", encoding=encoding) as f:
        f.write(text)
    return Path(path)


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` all or nothing."""
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)
