"""Files that appear whole or not at all: a temporary file in the target's folder, renamed over it.

In: a path and a function that writes bytes (plus an optional check of the finished file, and the
input files that must never be overwritten). Out: the path, written atomically with the permissions
a plain ``open(path, "wb")`` would give.

The target must be a regular file or not exist yet: a device node (``-o /dev/null`` run as root), a
FIFO, a folder or a symbolic link is refused before anything is written, since renaming over it
would replace it. An input (the spec being built) is refused as a target too. The temporary file is
removed on any error, on Ctrl-C (``KeyboardInterrupt``) and on SIGTERM.
Used for ``netspec build -o``, ``netspec schema -o``, ``netspec emit -o`` and ``netspec.save``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import stat
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO

from ..errors import NetspecError
from ..frontend.source import file_kind


def check_target(
    path: str | os.PathLike[str],
    inputs: Sequence[str | os.PathLike[str]] = (),
    error: type[NetspecError] = NetspecError,
) -> Path:
    """The output path, or ``error`` when writing it would destroy something other than an old output.

    Refused: an empty name, a folder that does not exist, an existing target that is not a regular
    file (checked with ``lstat``: a symbolic link is refused, not followed), and any of ``inputs``.
    """
    raw = os.fspath(path)
    if not raw:
        raise error("the output file name is empty")
    target = Path(raw).expanduser()
    folder = target.parent
    if not folder.is_dir():
        raise error(f"cannot write {target}: folder {folder} does not exist")
    try:
        info = os.lstat(target)
    except FileNotFoundError:
        return target
    except OSError as err:
        raise error(f"cannot write {target}: {err.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise error(
            f"refusing to write {target}: it is {file_kind(info.st_mode)}, not a regular file "
            "(netspec replaces the target with a new file; name a new or regular file)"
        )
    for item in inputs:
        try:
            same = os.path.samefile(target, os.fspath(item))
        except OSError:
            continue
        if same:
            raise error(f"refusing to write {target}: it is the input {os.fspath(item)} itself")
    return target


class _Terminated(BaseException):
    """SIGTERM arrived while a file was being written; re-raised as SystemExit(143) after cleanup."""


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    # SIGTERM's default action kills the process at once, leaving the temporary file behind. While
    # writing, turn it into an exception so the cleanup below runs. Only the main thread may do this.
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_DFL:  # the application handles SIGTERM itself: leave it alone
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise _Terminated

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def atomic_write(
    path: str | os.PathLike[str],
    write: Callable[[IO[bytes]], None],
    verify: Callable[[Path], None] | None = None,
    error: type[NetspecError] = NetspecError,
    inputs: Sequence[str | os.PathLike[str]] = (),
) -> Path:
    """Write ``path`` through a temporary file in its folder and ``os.replace``: all or nothing.

    ``verify`` sees the complete temporary file before it is renamed and may raise to abandon it.
    The temporary file is created with mode 0o666 so the umask decides the final permissions,
    exactly as for a file opened with ``open(path, "wb")``. See ``check_target`` for what is refused.
    """
    target = check_target(path, inputs, error)
    folder = target.parent
    tmp = folder / f".{target.name}.{secrets.token_hex(4)}.tmp"
    try:
        with _sigterm_raises():
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            except OSError as err:
                raise error(f"cannot write {target}: {err.strerror}") from None
            try:
                with os.fdopen(fd, "wb") as fh:
                    write(fh)
                    fh.flush()
                    os.fsync(fh.fileno())
                if verify is not None:
                    verify(tmp)
                check_target(target, inputs, error)  # it may have been replaced while we wrote
                os.replace(tmp, target)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
    except _Terminated:
        raise SystemExit(128 + signal.SIGTERM) from None
    try:  # make the rename itself durable; not every platform lets a folder be opened
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return target
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
    return target
