"""Small file helpers shared by checkpoints, exports and reports (torch-free)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` so that `path` is either its old content or the complete new one, never half.

    The bytes go to a temporary file in the same directory, are fsync'ed, then renamed over `path`.
    """
    path = Path(path)
    if not path.parent.exists():
        raise FileNotFoundError(f"{path}: directory {path.parent} does not exist")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        apply_umask(tmp)  # mkstemp's 0600 would hide the file from other users
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def apply_umask(path: str | os.PathLike) -> None:
    """Give a file the mode a plain open() would have (0666 less the umask)."""
    os.chmod(path, 0o666 & ~_current_umask())


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
