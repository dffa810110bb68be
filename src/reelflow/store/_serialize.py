"""Artifact encoding: pickle protocol 5 with out-of-band buffers, compressed only where it pays.

Blob layout (all integers little-endian)::

    b"RFB1" | u32 n_parts | n_parts x (u8 codec, u64 raw_len, u64 stored_len) | part bytes ...

Part 0 is the pickle stream; parts 1.. are the out-of-band buffers (numpy arrays,
bytes-like payloads) so large arrays are written and read without an extra copy.
The content key is the xxh3-128 digest of the *raw* parts and their lengths, so
identical objects get identical keys whatever codec stored them, and every read
re-computes it.
"""

from __future__ import annotations

import pickle
import struct
import threading
from collections.abc import Sequence
from typing import Any

import xxhash

from ..errors import CorruptArtifactError

__all__ = ["encode", "decode", "content_key", "EncodedBlob"]

MAGIC = b"RFB1"
RAW, ZSTD = 0, 1
_PART = struct.Struct("<BQQ")
_COUNT = struct.Struct("<I")
_LEN = struct.Struct("<Q")
# Below this a part is tried whole; above it a sample decides whether compression pays.
_SAMPLE_FROM = 1 << 20
_SAMPLE_SIZE = 1 << 17
_MIN_GAIN = 0.85  # compress only when it saves at least 15 %
_SMALL = 256  # tiny parts are never worth a codec
# Bytes that start like an already-compressed format (PNG, JPEG, gzip, zstd, zip, WebP/RIFF)
# are stored as they are: trying zstd on them costs time and saves nothing.
_PACKED = (b"\x89PNG", b"\xff\xd8\xff", b"\x1f\x8b", b"\x28\xb5\x2f\xfd", b"PK\x03\x04", b"RIFF")

# zstd contexts are not thread-safe (sharing one across threads corrupts output and can
# crash the interpreter), so each thread gets its own; creating one per call would cost
# more than small artifacts take to compress.
_local = threading.local()


def _compressor() -> Any:
    c = getattr(_local, "compressor", None)
    if c is None:
        import zstandard

        c = _local.compressor = zstandard.ZstdCompressor(level=3)
    return c


def _decompressor() -> Any:
    d = getattr(_local, "decompressor", None)
    if d is None:
        import zstandard

        d = _local.decompressor = zstandard.ZstdDecompressor()
    return d


class EncodedBlob:
    """An encoded artifact: its content key, the chunks to write and the raw size."""

    __slots__ = ("key", "chunks", "raw_size")

    def __init__(self, key: str, chunks: list[bytes | memoryview], raw_size: int) -> None:
        self.key = key
        self.chunks = chunks
        self.raw_size = raw_size

    @property
    def stored_size(self) -> int:
        return sum(len(c) for c in self.chunks)


def content_key(parts: Sequence[bytes | bytearray | memoryview]) -> str:
    """xxh3-128 over the parts and their lengths (lengths keep part boundaries unambiguous)."""
    h = xxhash.xxh3_128()
    for p in parts:
        h.update(_LEN.pack(len(p)))
        h.update(p)
    return h.hexdigest()


def _maybe_compress(part: memoryview) -> tuple[int, bytes | memoryview]:
    n = len(part)
    if n < _SMALL:
        return RAW, part
    c = _compressor()
    if n >= _SAMPLE_FROM:
        mid = n // 2
        sample = part[mid : mid + _SAMPLE_SIZE]
        if len(c.compress(sample)) > _MIN_GAIN * len(sample):
            return RAW, part
        out = c.compress(part)
    else:
        out = c.compress(part)
    if len(out) > _MIN_GAIN * n:
        return RAW, part
    return ZSTD, out


def encode(obj: Any) -> EncodedBlob:
    """Pickle ``obj`` (protocol 5, out-of-band buffers) and choose a codec per part.

    Raises whatever :func:`pickle.dumps` raises for an unpicklable object; the
    caller adds the artifact's name to the message.
    """
    buffers: list[pickle.PickleBuffer] = []
    stream = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    raw: list[memoryview] = [memoryview(stream)]
    for b in buffers:
        m = b.raw()  # contiguous byte view, no copy
        raw.append(m)
    key = content_key(raw)
    header = bytearray(MAGIC)
    header += _COUNT.pack(len(raw))
    body: list[bytes | memoryview] = []
    packed = isinstance(obj, (bytes, bytearray)) and obj.startswith(_PACKED)
    for part in raw:
        codec, stored = (RAW, part) if packed else _maybe_compress(part)
        header += _PART.pack(codec, len(part), len(stored))
        body.append(stored)
    return EncodedBlob(key, [bytes(header), *body], sum(len(p) for p in raw))


def decode(data: bytes | bytearray | memoryview, key: str, what: str = "artifact") -> Any:
    """Check ``data`` against ``key`` and unpickle it.

    ``what`` names the artifact in the error raised when the bytes are corrupt.
    """
    view = memoryview(data)
    try:
        if bytes(view[:4]) != MAGIC:
            raise ValueError("bad magic")
        (n,) = _COUNT.unpack_from(view, 4)
        off = 4 + _COUNT.size
        specs = []
        for _ in range(n):
            specs.append(_PART.unpack_from(view, off))
            off += _PART.size
        parts: list[bytes | bytearray | memoryview] = []
        for codec, raw_len, stored_len in specs:
            chunk: bytearray | memoryview = view[off : off + stored_len]
            off += stored_len
            if codec == ZSTD:
                # bytearray: arrays rebuilt from it stay writeable, like raw parts
                chunk = bytearray(_decompressor().decompress(chunk, max_output_size=raw_len))
            elif codec != RAW:
                raise ValueError(f"unknown codec {codec}")
            if len(chunk) != raw_len:
                raise ValueError("truncated part")
            parts.append(chunk)
        if off != len(view):
            raise ValueError("trailing bytes")
    except Exception as exc:
        raise CorruptArtifactError(
            f"{what} (blob {key}) is corrupt: {exc}; the blob file was damaged after it was "
            "written. Re-run the step that produced it (e.g. `resume` from that step)."
        ) from None
    if content_key(parts) != key:
        raise CorruptArtifactError(
            f"{what} (blob {key}) failed its hash check: the stored bytes changed after they "
            "were written. Re-run the step that produced it (e.g. `resume` from that step)."
        )
    return pickle.loads(parts[0], buffers=parts[1:])
