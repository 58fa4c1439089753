"""Files that appear whole or not at all: a temporary file in the target's folder, renamed over it.

In: a path and a function that writes bytes (plus an optional check of the finished file).
Out: the path, written atomically with the permissions a plain ``open(path, "wb")`` would give.
Used for ``netspec build -o``, ``netspec schema -o``, ``netspec emit -o`` and ``netspec.save``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO

from ..errors import NetspecError


def atomic_write(
    path: str | os.PathLike[str],
    write: Callable[[IO[bytes]], None],
    verify: Callable[[Path], None] | None = None,
    error: type[NetspecError] = NetspecError,
) -> Path:
    """Write ``path`` through a temporary file in its folder and ``os.replace``: all or nothing.

    ``verify`` sees the complete temporary file before it is renamed and may raise to abandon it.
    The temporary file is created with mode 0o666 so the umask decides the final permissions,
    exactly as for a file opened with ``open(path, "wb")``.
    """
    target = Path(os.fspath(path)).expanduser()
    folder = target.parent
    if not folder.is_dir():
        raise error(f"cannot write {target}: folder {folder} does not exist")
    tmp = folder / f".{target.name}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        if verify is not None:
            verify(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
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
