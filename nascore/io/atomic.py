"""Atomic writes: a file or a folder appears complete or not at all.

A file is written to a temporary file beside the target, fsynced and renamed over it (:func:`atomic_write`); a
folder is filled as a temporary folder beside the target, fsynced and renamed to it (:func:`atomic_dir`). Readers
see the old one or the new one, never half of either; a crash leaves at most a hidden ``.NAME.*`` behind, never a
truncated result.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(fh)`` on a temporary binary file, then move it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # as a plain open() would: mkstemp's 0600 would hide results from others
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


@contextmanager
def atomic_dir(target: str | Path, *, replace: bool | Callable[[Path], None] = False) -> Iterator[Path]:
    """Fill a folder that appears at ``target`` complete or not at all.

    Yields a new hidden folder beside ``target`` (``.NAME.XXXX``, with the permissions ``mkdir`` would give). When
    the block ends normally, everything in it is fsynced and it is renamed to ``target``; when the block raises, it
    is removed and ``target`` is left as it was. With ``replace``, an existing ``target`` is first set aside as
    ``.NAME.old-XXXX`` and deleted only once the new folder is in place (killed between the two renames, the old
    one survives there); without, an existing non-empty ``target`` is a FileExistsError.

    ``replace`` may be a check ``replace(old)`` instead of True: it is called on the folder set aside, after the
    rename (so nothing can slip into it between the check and the deletion), and when it raises, the folder is put
    back untouched and the exception propagates. Callers replacing what they must prove they wrote pass one.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's 0700 would hide results from others
        yield tmp
        fsync_tree(tmp)
        _move_into_place(tmp, target, replace)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _move_into_place(tmp: Path, target: Path, replace: bool | Callable[[Path], None]) -> None:
    old = None
    if replace and (target.exists() or target.is_symlink()):
        old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(target, old)
    try:
        if old is not None and callable(replace):
            replace(old)
        os.rename(tmp, target)
    except BaseException as exc:
        if old is not None and not target.exists():
            os.rename(old, target)
        if isinstance(exc, OSError) and exc.errno in (errno.EEXIST, errno.ENOTEMPTY):  # created meanwhile
            raise FileExistsError(exc.errno, exc.strerror, str(target)) from None
        raise
    _fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def fsync_tree(folder: str | Path) -> None:
    """Flush every file and folder below ``folder`` (and ``folder`` itself) to disk."""
    folder = Path(folder)
    for path in sorted(folder.rglob("*"), reverse=True):  # children before the folders holding them
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        elif path.is_dir():
            _fsync_dir(path)
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (names created or renamed in it); a file system that cannot is let be."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


__all__ = ["atomic_dir", "atomic_write", "atomic_write_bytes", "atomic_write_text", "fsync_tree"]
