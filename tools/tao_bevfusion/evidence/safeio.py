"""Reading files a job (or anyone with the user's files) may have replaced: a status.json or job.log that is
a FIFO, a link to /dev/zero or to a host file must neither hang a poll, nor grow without bound, nor be read.
"""

import os
import stat
from pathlib import Path


def read_regular(path: Path, start: int, limit: int) -> tuple[int, bytes] | None:
    """(file size, up to `limit` bytes from `start` — from 0 when the file shrank below it) of a regular file,
    not following a final symlink and never blocking on a FIFO; None when it is missing or not a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        size = info.st_size
        fh.seek(start if start <= size else 0)
        return size, fh.read(max(0, min(limit, size - fh.tell())))
