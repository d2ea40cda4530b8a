"""Content hashes of the files the project writes (compressor weights, zoo shards, checkpoints).

A writer records `sha256_file(path)` in the file's JSON sidecar; a reader calls `verify` before
trusting the bytes, so a flipped bit in a weight file is an error naming the file, not a network
that silently holds NaN. Each file is hashed once per process (keyed by path, size and mtime).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_VERIFIED: set[tuple[str, int, int]] = set()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify(path: str | os.PathLike, expected: str | None, error: type[Exception]) -> None:
    """Raise `error` naming `path` when its sha256 is not `expected` (None: nothing recorded)."""
    if expected is None:
        return
    st = Path(path).stat()
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if key in _VERIFIED:
        return
    actual = sha256_file(path)
    if actual != expected:
        raise error(
            f"{path}: content hash mismatch (sha256 {actual[:16]}..., recorded {expected[:16]}...): "
            "the file was changed or corrupted after it was written"
        )
    _VERIFIED.add(key)
