"""One atomic write: readers see the old file or the new one, never a part; the new file is private.

A unique temporary file beside the target (two writers never share one), flushed and fsynced, given its
mode, then renamed over the target. On failure the temporary file is removed and the error raised.
"""

import os
import tempfile
from pathlib import Path


def atomic_write(path: Path, data: str | bytes, mode: int = 0o600, exclusive: bool = False) -> None:
    """exclusive: the new file is linked into place, so an existing one is never replaced (FileExistsError)."""
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        if exclusive:
            os.link(tmp, path)
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
