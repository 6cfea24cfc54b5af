"""Token shards in the competition's binary format, so upstream training scripts read ours unchanged.

Layout: a header of 256 little-endian int32 (`[0]` magic 20240520, `[1]` version 1,
`[2]` token count), then the tokens as little-endian uint16.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

SHARD_MAGIC = 20240520
SHARD_VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
MAX_TOKEN_ID = 2**16 - 1


class ShardFormatError(ValueError):
    """A file is not a valid competition shard (the message names the file and the fix)."""


def shard_name(split: str, index: int) -> str:
    """Upstream file name for a shard: `fineweb_train_000000.bin` / `fineweb_val_000000.bin`."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    return f"fineweb_{split}_{index:06d}.bin"


def write_shard(path: str | os.PathLike, tokens) -> Path:
    """Write `tokens` (ints in [0, 65535]) as one shard; atomic (temp file + rename)."""
    path = Path(path)
    arr = np.asarray(tokens)
    if arr.ndim != 1:
        raise ValueError(f"write_shard: tokens must be 1-D, got shape {arr.shape}; flatten them first")
    if arr.size and (not np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"write_shard: tokens must be integers, got dtype {arr.dtype}")
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) > MAX_TOKEN_ID):
        raise ValueError(
            f"write_shard: token ids must be in [0, {MAX_TOKEN_ID}] (uint16), got range "
            f"[{int(arr.min())}, {int(arr.max())}]; use a vocabulary of at most 65536"
        )
    if arr.size > np.iinfo(np.int32).max:
        raise ValueError(f"write_shard: {arr.size} tokens do not fit one shard; split them into several shards")
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[0], header[1], header[2] = SHARD_MAGIC, SHARD_VERSION, arr.size
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(header.tobytes())
        f.write(arr.astype("<u2", copy=False).tobytes())
    os.replace(tmp, path)
    return path


def read_shard_header(path: str | os.PathLike) -> int:
    """Validate a shard's header and size; returns its token count."""
    path = Path(path)
    if not path.is_file():
        raise ShardFormatError(f"{path}: no such shard; run `python -m pgolf.data prepare` or `download` first")
    size = path.stat().st_size
    if size < HEADER_BYTES:
        raise ShardFormatError(
            f"{path}: {size} bytes is shorter than the {HEADER_BYTES}-byte shard header; re-create the shard"
        )
    header = np.fromfile(path, dtype="<i4", count=HEADER_INTS)
    if int(header[0]) != SHARD_MAGIC:
        raise ShardFormatError(
            f"{path}: bad magic {int(header[0])} (expected {SHARD_MAGIC}); not a competition shard, re-create it"
        )
    if int(header[1]) != SHARD_VERSION:
        raise ShardFormatError(
            f"{path}: unsupported shard version {int(header[1])} (expected {SHARD_VERSION}); re-create the shard"
        )
    count = int(header[2])
    expected = HEADER_BYTES + 2 * count
    if count < 0 or size != expected:
        raise ShardFormatError(
            f"{path}: header says {count} tokens ({expected} bytes) but the file has {size} bytes; "
            "the shard is truncated or corrupt, re-create it"
        )
    return count


def read_shard(path: str | os.PathLike) -> np.ndarray:
    """Read a shard's tokens as a uint16 array, after validating magic, version and count."""
    count = read_shard_header(path)
    with open(path, "rb") as f:
        f.seek(HEADER_BYTES)
        tokens = np.fromfile(f, dtype="<u2", count=count)
    return tokens.astype(np.uint16, copy=False)


class ShardSequenceWriter:
    """Streams a split's token stream into `fineweb_<split>_000000.bin`, `…_000001.bin`, … of
    `shard_tokens` tokens each, holding at most about one shard in memory."""

    def __init__(self, directory: Path, split: str, shard_tokens: int) -> None:
        if shard_tokens < 1:
            raise ValueError(f"shard_tokens={shard_tokens} must be positive")
        self.directory, self.split, self.shard_tokens = Path(directory), split, shard_tokens
        self.counts: dict[str, int] = {}
        self._parts: list[np.ndarray] = []
        self._buffered = 0

    def add(self, tokens: np.ndarray) -> None:
        self._parts.append(np.asarray(tokens, dtype=np.uint16))
        self._buffered += len(tokens)
        while self._buffered >= self.shard_tokens:
            self._flush(self.shard_tokens)

    def _flush(self, n: int) -> None:
        stream = np.concatenate(self._parts) if self._parts else np.zeros(0, dtype=np.uint16)
        name = shard_name(self.split, len(self.counts))
        write_shard(self.directory / name, stream[:n])
        self.counts[name] = int(min(n, stream.size))
        rest = stream[n:]
        self._parts, self._buffered = ([rest] if rest.size else []), int(rest.size)

    def close(self) -> dict[str, int]:
        """Write the last partial shard (or one empty shard if nothing was added); returns name -> tokens."""
        if self._buffered or not self.counts:
            self._flush(self._buffered)
        return self.counts
