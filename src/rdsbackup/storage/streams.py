"""Compressed, checksummed (and optionally encrypted) object streams over any :class:`Storage`.

:class:`SetWriter` is the sink engines write into: each raw stream is compressed with
zstd (multi-threaded inside libzstd, outside the GIL), encrypted when the set has a
data key (:mod:`rdsbackup.storage.crypto`, chunked AES-256-GCM), hashed (sha256 of the
stored bytes) and written through the storage driver, with no temporary copy.
:class:`SetReader` gives the raw bytes back and fails loudly when the stored bytes do
not match the manifest (at EOF) or a chunk fails authentication (where it is read).
"""

from __future__ import annotations

import hashlib
import io
import threading
import zlib
from typing import IO, BinaryIO, cast

import zstandard

from rdsbackup.manifest import Manifest, StoredObject
from rdsbackup.readahead import ReadAhead
from rdsbackup.storage.base import ObjectWriter, Storage, StorageError
from rdsbackup.storage.crypto import DecryptingReader, EncryptingWriter
from rdsbackup.storage.keys import Keyring, KeyUnavailable, SetKey

CHUNK = 1 << 20
COMPRESSIONS = ("zstd", "gzip", "none")
SUFFIX = {"zstd": ".zst", "gzip": ".gz", "none": ""}


class ChecksumMismatch(StorageError):
    def __init__(self, name: str, detail: str) -> None:
        super().__init__(f"object {name} is corrupt: {detail}")
        self.name = name


class _HashingWriter:
    def __init__(self, inner: ObjectWriter) -> None:
        self.inner = inner
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | memoryview, /) -> int:
        self.sha.update(data)
        self.size += len(data)
        self.inner.write(data)
        return len(data)

    def flush(self) -> None:
        pass


class SetWriter:
    """Writes the objects of one backup set under ``prefix``; counts raw bytes for progress."""

    def __init__(
        self,
        storage: Storage,
        prefix: str,
        *,
        compression: str = "zstd",
        level: int = 1,
        threads: int = 2,
        encryption: SetKey | None = None,
    ) -> None:
        if compression not in COMPRESSIONS:
            raise ValueError(f"unsupported compression {compression!r}")
        self.storage = storage
        self.prefix = prefix.rstrip("/") + "/"
        self.compression = compression
        self.level = level
        self.threads = threads
        self.encryption = encryption
        self._lock = threading.Lock()
        self._raw_bytes = 0
        self.objects: list[StoredObject] = []

    @property
    def raw_bytes(self) -> int:
        return self._raw_bytes

    def _count(self, n: int) -> None:
        with self._lock:
            self._raw_bytes += n

    def stored_name(self, name: str) -> str:
        return name + SUFFIX[self.compression]

    def put(self, name: str, stream: BinaryIO, *, inline: bool = False) -> StoredObject:
        stored = self.stored_name(name)
        raw = 0
        with self.storage.writer(self.prefix + stored) as out:
            hashing = _HashingWriter(out)
            sink: ObjectWriter = hashing
            sealer = None
            if self.encryption is not None:
                key = self.encryption
                sealer = EncryptingWriter(hashing, key.data_key, stored, key.chunk_size)
                sink = sealer
            if self.compression == "zstd":
                # One worker thread adds no parallelism, only a job buffer (tens of MiB at
                # high levels) that lets Process run ahead of the work: compress in line.
                threads = self.threads if self.threads > 1 and not inline else 0
                cctx = zstandard.ZstdCompressor(level=self.level, threads=threads)
                with cctx.stream_writer(cast(IO[bytes], sink), closefd=False) as z:
                    raw = self._pump(stream, z)
            elif self.compression == "gzip":
                gz = _GzipWriter(sink, min(max(self.level, 1), 9))
                raw = self._pump(stream, gz)
                gz.close()
            else:
                raw = self._pump(stream, sink)
            if sealer is not None:
                sealer.close()
        obj = StoredObject(stored, hashing.size, raw, hashing.sha.hexdigest(), self.compression)
        with self._lock:
            self.objects.append(obj)
        return obj

    def put_bytes(self, name: str, data: bytes) -> StoredObject:
        return self.put(name, io.BytesIO(data))

    def _pump(self, stream: BinaryIO, out: ObjectWriter) -> int:
        """Copy ``stream`` to ``out``. Streams that can ``readinto`` (tool pipes) go
        through one reused buffer, with no allocation per read: the compressor and the
        hash consume each chunk before the next read overwrites it."""
        readinto = getattr(stream, "readinto1", None) or getattr(stream, "readinto", None)
        if readinto is None:
            return self._pump_chunks(stream, out)
        total = 0
        view = memoryview(bytearray(CHUNK))
        while n := readinto(view):
            out.write(view[:n])
            total += n
            self._count(n)
        return total

    def _pump_chunks(self, stream: BinaryIO, out: ObjectWriter) -> int:
        total = 0
        read = getattr(stream, "read1", stream.read)
        while chunk := read(CHUNK):
            out.write(chunk)
            total += len(chunk)
            self._count(len(chunk))
        return total


class _GzipWriter:
    """gzip (RFC 1952) through zlib; single-threaded, for users who ask for it."""

    def __init__(self, inner: ObjectWriter, level: int) -> None:
        self.inner = inner
        self.z = zlib.compressobj(level, zlib.DEFLATED, 31)

    def write(self, data: bytes | memoryview, /) -> int:
        out = self.z.compress(data)
        if out:
            self.inner.write(out)
        return len(data)

    def close(self) -> None:
        self.inner.write(self.z.flush())


class _GunzipReader(io.RawIOBase):
    """Decompresses ``source`` (the verifying or decrypting reader of object ``name``);
    reading ``source`` to its end is what checks the checksum."""

    def __init__(self, source: io.RawIOBase, name: str) -> None:
        self.source = source
        self.name = name
        self.z = zlib.decompressobj(31)
        self.pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self.pending:
            chunk = self.source.read(CHUNK)
            try:
                self.pending = self.z.decompress(chunk) if chunk else self.z.flush()
            except zlib.error as e:
                raise ChecksumMismatch(self.name, f"gzip: {e}") from e
            if not chunk:
                if not self.pending:
                    return 0
                break
        n = min(len(buffer), len(self.pending))
        buffer[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n

    def close(self) -> None:
        self.source.close()
        super().close()


class _VerifyingRaw(io.RawIOBase):
    """Reads stored bytes, hashing them; checks size and sha256 once the end is reached."""

    def __init__(self, inner: BinaryIO, obj: StoredObject) -> None:
        self.inner = inner
        self.obj = obj
        self.sha = hashlib.sha256()
        self.size = 0
        self.checked = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = self.inner.readinto(buffer)  # type: ignore[attr-defined]
        if n:
            self.sha.update(buffer[:n])
            self.size += n
        else:
            self.finish()
        return int(n or 0)

    def finish(self) -> None:
        if self.checked:
            return
        while chunk := self.inner.read(CHUNK):
            self.sha.update(chunk)
            self.size += len(chunk)
        self.checked = True
        if self.size != self.obj.size:
            raise ChecksumMismatch(self.obj.name, f"size {self.size} != {self.obj.size}")
        if self.sha.hexdigest() != self.obj.sha256:
            raise ChecksumMismatch(self.obj.name, "sha256 does not match the manifest")

    def close(self) -> None:
        self.inner.close()
        super().close()


class _DecompressingReader(io.RawIOBase):
    """Decompresses what ``raw`` verifies; reading and hashing run ahead on their own
    thread (:class:`ReadAhead`) while this one decompresses."""

    def __init__(self, source: io.RawIOBase, name: str) -> None:
        self.name = name
        self.source = ReadAhead(source, name="verify-read")
        self.z = zstandard.ZstdDecompressor().stream_reader(
            cast(IO[bytes], self.source), read_across_frames=True, read_size=CHUNK
        )

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        try:
            n = self.z.readinto(buffer)
        except zstandard.ZstdError as e:
            raise ChecksumMismatch(self.name, f"zstd: {e}") from e
        if n == 0:
            while self.source.read(CHUNK):  # to the end, where the checksum is checked
                pass
        return int(n)

    def close(self) -> None:
        self.z.close()  # type: ignore[no-untyped-call]
        self.source.close()
        super().close()


class SetReader:
    """Reads the objects of a stored set, verifying each against the manifest; an
    encrypted set's data key is unwrapped with ``keyring`` (KeyUnavailable if it
    cannot be)."""

    def __init__(
        self, storage: Storage, prefix: str, manifest: Manifest, keyring: Keyring | None = None
    ) -> None:
        self.storage = storage
        self.prefix = prefix.rstrip("/") + "/"
        self.manifest = manifest
        self.key: SetKey | None = None
        if manifest.encryption:
            if keyring is None:
                raise KeyUnavailable("the set is encrypted and no encryption keys are configured")
            self.key = keyring.set_key(manifest.encryption)

    def _stored(self, name: str) -> StoredObject:
        for obj in self.manifest.objects:
            if name in (obj.name, obj.name.removesuffix(SUFFIX.get(obj.compression, ""))):
                return obj
        raise KeyError(name)

    def _verifying(self, name: str) -> _VerifyingRaw:
        obj = self._stored(name)
        return _VerifyingRaw(self.storage.reader(self.prefix + obj.name), obj)

    def open(self, name: str) -> BinaryIO:
        """Raw bytes of object ``name`` (stored name, or the name given to ``put``)."""
        return _raw_stream(self._verifying(name), self.key)

    def open_stored(self, name: str) -> tuple[BinaryIO, str]:
        """The compressed bytes of object ``name`` (decrypted, for an encrypted set) and
        their compression; reading to the end checks size and sha256, as ``open`` does."""
        raw = self._verifying(name)
        return io.BufferedReader(_plain(raw, self.key), buffer_size=CHUNK), raw.obj.compression

    def verify(self, name: str) -> None:
        """Check one stored object's size and sha256 without decompressing it."""
        raw = self._verifying(name)
        try:
            raw.finish()
        finally:
            raw.close()

    def verify_all(self) -> None:
        for obj in self.manifest.objects:
            self.verify(obj.name)


def open_object(storage: Storage, key: str, obj: StoredObject, set_key: SetKey | None) -> BinaryIO:
    """Raw bytes of one object stored by a :class:`SetWriter` at ``key`` (outside any
    set's manifest: a log file), verified against ``obj`` as :meth:`SetReader.open` does."""
    return _raw_stream(_VerifyingRaw(storage.reader(key), obj), set_key)


def _plain(raw: _VerifyingRaw, key: SetKey | None) -> io.RawIOBase:
    """The compressed bytes: the stored ones, decrypted if the object is encrypted."""
    if key is None:
        return raw
    try:
        return DecryptingReader(raw, key.data_key, raw.obj.name)
    except BaseException:
        raw.close()
        raise


def _raw_stream(raw: _VerifyingRaw, key: SetKey | None) -> BinaryIO:
    obj = raw.obj
    inner = _plain(raw, key)
    if obj.compression == "zstd":
        inner = _DecompressingReader(inner, obj.name)
    elif obj.compression == "gzip":
        inner = _GunzipReader(inner, obj.name)
    return io.BufferedReader(inner, buffer_size=CHUNK)
