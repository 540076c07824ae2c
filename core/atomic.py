"""Atomic replacement of a directory: a crash or Ctrl-C never leaves a half-written one in place."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import OutputError

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _renameat2_exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return rc == 0


def _fsync_tree(path: Path) -> None:
    for root, _dirs, files in os.walk(path):
        for name in files:
            with open(os.path.join(root, name), "rb") as fh:
                os.fsync(fh.fileno())


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (someone else's included)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, someone else's
        return True
    return True


def clean_stale(target: Path) -> list[Path]:
    """Remove what a writer of ``target`` killed mid-write left beside it (``.NAME.partial-PID-*``,
    ``.NAME.old-PID-*``, training's ``.NAME.staging-PID-*`` of a process that no longer runs); a live
    writer's folders are left alone."""
    removed = []
    for kind in ("partial", "old", "staging"):
        for p in target.parent.glob(f".{target.name}.{kind}-*"):
            pid = p.name[len(f".{target.name}.{kind}-"):].split("-", 1)[0]
            if pid.isdigit() and not process_alive(int(pid)) and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
    return removed


def check_writable(target: Path | str) -> Path:
    """Refuse, before any long work, an output whose folder cannot hold it: the folder is made if
    missing and a scratch file is created and removed in it. Raises :class:`OutputError` naming it."""
    target = Path(target).absolute()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, scratch = tempfile.mkstemp(prefix=f".{target.name}.check-", dir=target.parent)
        os.close(fd)
        os.unlink(scratch)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc} ({target.parent})") from exc
    return target


@contextlib.contextmanager
def atomic_directory(target: Path | str) -> Iterator[Path]:
    """Yield a fresh temporary directory beside ``target``; on success it replaces ``target``.

    On any exception (KeyboardInterrupt included) the temporary directory is removed and
    ``target`` is left exactly as it was. Where the platform supports it the swap is one
    atomic ``renameat2(RENAME_EXCHANGE)``; elsewhere the old directory is renamed aside
    first and put back if the second rename fails.
    """
    target = Path(target).absolute()
    if target.is_symlink():  # rewrite what the link points to; the link itself stays a link
        target = Path(os.path.realpath(target))
    check_writable(target)
    clean_stale(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-{os.getpid()}-", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it 0700; a bundle is an ordinary directory
    try:
        yield tmp
        _fsync_tree(tmp)
        if target.exists():
            if not target.is_dir():
                raise FileExistsError(f"{target} exists and is not a directory")
            if not _renameat2_exchange(tmp, target):
                aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-{os.getpid()}-", dir=target.parent))
                os.rmdir(aside)
                os.rename(target, aside)
                try:
                    os.rename(tmp, target)
                except BaseException:
                    os.rename(aside, target)
                    raise
                tmp = aside
            # after the exchange `tmp` holds the previous content
        else:
            os.rename(tmp, target)
            tmp = None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_bytes(target: Path | str, data: bytes) -> Path:
    """Write ``data`` to ``target`` through a temporary file beside it and one rename: a reader (or a
    crash) sees the old file or the new one, never half of one."""
    target = check_writable(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.partial-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask
