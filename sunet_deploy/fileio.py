"""Small file helpers shared by checkpoints, exports and reports (torch-free)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A name beside `path` to write to, renamed to `path` when the block ends without an error.

    A process killed mid-write leaves `path` as it was (or absent), never half written, so a resumed run
    sees the output as missing and writes it again. The name keeps the suffix, for writers that choose the
    format by it, and is the same every time: a later write of `path` replaces what a killed one left.
    No fsync: this guards against a killed process, not a power cut (atomic_write_bytes does both).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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
