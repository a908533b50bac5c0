"""Writing files so that no reader ever sees half of one."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["write_atomically"]


def write_atomically(path: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> None:
    """Run ``write`` on a temporary file beside ``path``, then move it into place.

    The file gets the permissions an ordinary ``open(path, "w")`` would give (mkstemp's
    are 0600).
    """
    target = Path(path)
    if not target.parent.is_dir():  # else mkstemp's error would name its temporary file
        raise FileNotFoundError(
            errno.ENOENT, f"cannot write {os.fspath(path)}: no such folder", os.fspath(target.parent)
        )
    # mkstemp opens a new file with O_EXCL under a random name: a symlink planted where
    # the temporary file would go is never followed.
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part",
                                         dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, target)
    except BaseException:
        os.unlink(temporary)
        raise
