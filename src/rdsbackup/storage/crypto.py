"""The encrypted object format: AES-256-GCM over fixed-size chunks (an online AEAD in
the manner of the STREAM construction), so an object is encrypted and decrypted as it
streams, in bounded memory, and any chunk can be decrypted on its own (byte ranges).

Layout of one stored object::

    header   "RDSE" | version u8 (1) | chunk size u32 BE | nonce prefix (8 random bytes)
    chunk 0  ciphertext (chunk size bytes) | GCM tag (16 bytes)
    ...
    chunk n  ciphertext (1..chunk size bytes; 0 only for an empty object) | tag

Chunk ``i`` is sealed under the set's data key with the nonce ``prefix | i (u32 BE)``
and the associated data ``header | i (u32 BE) | final (u8: 1 on the last chunk) |
object name``. A chunk moved within its object, or into another object (another
prefix, another name), fails its tag; so does dropping chunks at the end (the new last
chunk was not sealed as final) and appending anything after the final chunk (it was
sealed as final). The header's bytes are in every chunk's associated data, so a
changed chunk size or prefix fails too.

The plaintext of each object is what the set would store unencrypted (compressed
bytes): encryption comes after compression.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Callable, Iterator
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from rdsbackup.storage.base import ObjectWriter, StorageError

ALGORITHM = "AES-256-GCM"
MAGIC = b"RDSE"
VERSION = 1
HEADER = struct.Struct(">4sBI8s")
HEADER_SIZE = HEADER.size
TAG_SIZE = 16
KEY_SIZE = 32
DEFAULT_CHUNK = 1 << 20
MIN_CHUNK = 16
MAX_CHUNK = 1 << 26
MAX_CHUNKS = 1 << 32
_INDEX = struct.Struct(">IB")


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes | None: ...

    def close(self) -> None: ...


class DecryptionFailed(StorageError):
    """A sibling of ``ChecksumMismatch``: the object's bytes are not what was sealed."""

    def __init__(self, name: str, detail: str) -> None:
        super().__init__(f"object {name} is corrupt: {detail}")
        self.name = name


def stored_size(plain_size: int, chunk_size: int = DEFAULT_CHUNK) -> int:
    chunks = max(1, -(-plain_size // chunk_size))
    return HEADER_SIZE + chunks * TAG_SIZE + plain_size


def _chunk_count(size: int, chunk_size: int) -> int:
    """Chunks in a stored object of ``size`` bytes; raises ValueError if none fits."""
    body = size - HEADER_SIZE
    record = chunk_size + TAG_SIZE
    count = max(1, -(-body // record))
    last = body - (count - 1) * record
    if body < TAG_SIZE or last < TAG_SIZE or (last == TAG_SIZE and count > 1):
        raise ValueError(f"{size} bytes is not the size of an encrypted object")
    return count


class _Sealer:
    def __init__(self, key: bytes, name: str, header: bytes) -> None:
        if len(key) != KEY_SIZE:
            raise ValueError("a data key is 32 bytes")
        _, _, chunk_size, prefix = HEADER.unpack(header)
        self.aead = AESGCM(key)
        self.header = header
        self.chunk_size = int(chunk_size)
        self.prefix = bytes(prefix)
        self.name = name.encode()

    def nonce(self, index: int) -> bytes:
        if index >= MAX_CHUNKS:
            raise ValueError("an object holds at most 2**32 chunks")
        return self.prefix + index.to_bytes(4, "big")

    def aad(self, index: int, final: bool) -> bytes:
        return self.header + _INDEX.pack(index, int(final)) + self.name

    def seal(self, index: int, data: bytes | memoryview, final: bool) -> bytes:
        return self.aead.encrypt(self.nonce(index), data, self.aad(index, final))

    def open(self, index: int, record: bytes | memoryview, final: bool) -> bytes:
        try:
            return self.aead.decrypt(self.nonce(index), record, self.aad(index, final))
        except InvalidTag:
            where = "final chunk" if final else "chunk"
            raise DecryptionFailed(
                self.name.decode(),
                f"{where} {index} fails authentication (wrong key, or the object was "
                "altered, truncated, extended or its chunks moved)",
            ) from None


def new_header(chunk_size: int = DEFAULT_CHUNK) -> bytes:
    if not MIN_CHUNK <= chunk_size <= MAX_CHUNK:
        raise ValueError(f"chunk size must be {MIN_CHUNK}..{MAX_CHUNK} bytes")
    return HEADER.pack(MAGIC, VERSION, chunk_size, os.urandom(8))


def _parse_header(name: str, header: bytes) -> None:
    if len(header) < HEADER_SIZE:
        raise DecryptionFailed(name, "shorter than the encryption header")
    magic, version, chunk_size, _ = HEADER.unpack(header)
    if magic != MAGIC:
        raise DecryptionFailed(name, "not an encrypted object (no RDSE header)")
    if version != VERSION:
        raise DecryptionFailed(name, f"encryption format version {version} is unknown")
    if not MIN_CHUNK <= chunk_size <= MAX_CHUNK:
        raise DecryptionFailed(name, f"chunk size {chunk_size} out of range")


class EncryptingWriter:
    """An :class:`ObjectWriter` that seals what is written to it into ``inner``; call
    ``close`` once everything is written (it seals the final chunk). It fills one chunk
    buffer and seals into one reused output buffer: no allocation per chunk. ``inner``
    consumes each write before the next one (as every storage writer does)."""

    def __init__(
        self, inner: ObjectWriter, key: bytes, name: str, chunk_size: int = DEFAULT_CHUNK
    ) -> None:
        header = new_header(chunk_size)
        self.inner = inner
        self.sealer = _Sealer(key, name, header)
        self.chunk_size = chunk_size
        self.index = 0
        self.buffer = memoryview(bytearray(chunk_size))
        self.filled = 0
        self.out = memoryview(bytearray(chunk_size + TAG_SIZE))
        self.closed = False
        inner.write(header)

    def write(self, data: bytes | memoryview, /) -> int:
        view = memoryview(data).cast("B")
        size, pos, n = self.chunk_size, 0, len(view)
        while pos < n:
            # A full chunk is sealed only once a byte beyond it arrives: the last chunk
            # must be sealed as final, and only close() knows which one that is.
            if self.filled == size:
                self._seal(False)
            take = min(size - self.filled, n - pos)
            self.buffer[self.filled : self.filled + take] = view[pos : pos + take]
            self.filled += take
            pos += take
        return n

    def _seal(self, final: bool) -> None:
        n = self.filled
        out = self.out[: n + TAG_SIZE]
        s = self.sealer
        s.aead.encrypt_into(s.nonce(self.index), self.buffer[:n], s.aad(self.index, final), out)
        self.inner.write(out)
        self.index += 1
        self.filled = 0

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._seal(True)


class DecryptingReader(io.RawIOBase):
    """The plaintext of the encrypted object read from ``inner`` (its stored bytes, from
    the start). Which chunk is the last is found by reading ahead, not from a recorded
    size, so a truncated or extended object fails on its own. ``DecryptionFailed``
    names the object."""

    def __init__(self, inner: Readable, key: bytes, name: str) -> None:
        self.inner = inner
        self.name = name
        header = _read_exactly(inner, HEADER_SIZE)
        _parse_header(name, header)
        self.sealer = _Sealer(key, name, header)
        self.record = self.sealer.chunk_size + TAG_SIZE
        self.index = 0
        self.buffer = memoryview(bytearray(self.record + 1))
        """One record and the first byte after it (which says the record is not the last)."""
        self.have = 0
        self.done = False
        self.plain = memoryview(b"")

    def readable(self) -> bool:
        return True

    def _next_chunk(self) -> bytes:
        if self.done:
            return b""
        while self.have < len(self.buffer):
            n = _read_into(self.inner, self.buffer[self.have :])
            if not n:
                break
            self.have += n
        final = self.have <= self.record
        size = self.have if final else self.record
        if size < TAG_SIZE or (final and size == TAG_SIZE and self.index > 0):
            raise DecryptionFailed(self.name, f"truncated at chunk {self.index}")
        plain = self.sealer.open(self.index, self.buffer[:size], final)
        if not final:  # the look-ahead byte starts the next record
            self.buffer[0] = self.buffer[self.record]
        self.have -= size
        self.index += 1
        self.done = final
        return plain

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self.plain:
            if self.done:
                return 0
            self.plain = memoryview(self._next_chunk())
        n = min(len(buffer), len(self.plain))
        buffer[:n] = self.plain[:n]
        self.plain = self.plain[n:]
        return n

    def read(self, size: int = -1, /) -> bytes:
        """A read of a whole chunk or more (ReadAhead's) gets the chunk itself, uncopied."""
        if size >= 0 and not self.plain and not self.done and size >= self.sealer.chunk_size:
            return self._next_chunk()
        return super().read(size) or b""

    def read_chunk(self) -> bytes:
        """The next chunk's whole plaintext (b"" at the end): no copy into a buffer."""
        if self.plain:
            rest, self.plain = bytes(self.plain), memoryview(b"")
            return rest
        while not self.done:
            chunk = self._next_chunk()
            if chunk:
                return chunk
        return b""

    def close(self) -> None:
        self.inner.close()
        super().close()


ReadAt = Callable[[int, int], bytes]
"""``read_at(offset, length)``: that many stored bytes from ``offset`` (fewer only at the end)."""


def decrypt_range(
    read_at: ReadAt, size: int, key: bytes, name: str, start: int, stop: int
) -> Iterator[bytes]:
    """Plaintext bytes ``[start, stop)`` of an encrypted object of ``size`` stored bytes,
    reading and authenticating only the chunks they fall in."""
    header = read_at(0, HEADER_SIZE)
    _parse_header(name, header)
    sealer = _Sealer(key, name, header)
    chunk, record = sealer.chunk_size, sealer.chunk_size + TAG_SIZE
    try:
        count = _chunk_count(size, chunk)
    except ValueError as e:
        raise DecryptionFailed(name, str(e)) from None
    plain_size = size - HEADER_SIZE - count * TAG_SIZE
    start, stop = max(0, start), min(stop, plain_size)
    index = start // chunk
    while start < stop:
        offset = HEADER_SIZE + index * record
        data = read_at(offset, min(record, size - offset))
        plain = sealer.open(index, data, index == count - 1)
        lo = start - index * chunk
        hi = min(len(plain), stop - index * chunk)
        yield plain[lo:hi]
        start = (index + 1) * chunk
        index += 1


def plaintext_size(size: int, chunk_size: int) -> int:
    return size - HEADER_SIZE - _chunk_count(size, chunk_size) * TAG_SIZE


def _read_into(inner: Readable, view: memoryview) -> int:
    readinto = getattr(inner, "readinto", None)
    if readinto is not None:
        return int(readinto(view) or 0)
    data = inner.read(len(view)) or b""
    view[: len(data)] = data
    return len(data)


def _read_exactly(inner: Readable, n: int) -> bytes:
    data = b""
    while len(data) < n:
        more = inner.read(n - len(data))
        if not more:
            break
        data += more
    return data
