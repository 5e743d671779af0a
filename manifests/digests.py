"""sha256 of bytes and of files: how the project names content (shards, members, sources,
downloads, synthetic files). The leaf of every package, so each part hashes the same way."""
from __future__ import annotations

import hashlib
import os
from typing import Callable

CHUNK = 1 << 20   # bytes read at a time: a file of any size hashes in bounded memory


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hash_file(path: str | os.PathLike, *hashes, on_chunk: Callable[[int], None] | None = None,
              chunk: int = CHUNK) -> None:
    """Feed the bytes of `path` to every hash object in `hashes` in one read of the file
    (`on_chunk(n)` after each block, e.g. a progress bar's update)."""
    with open(path, "rb") as f:
        while block := f.read(chunk):
            for h in hashes:
                h.update(block)
            if on_chunk is not None:
                on_chunk(len(block))


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 (hex) of a file's bytes."""
    h = hashlib.sha256()
    hash_file(path, h)
    return h.hexdigest()
