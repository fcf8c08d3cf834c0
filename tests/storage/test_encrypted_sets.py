"""SetWriter and SetReader with a set data key: every compression, stored bytes that are
not the plaintext, checksums of the stored bytes, corruption named, keys rotated."""

from __future__ import annotations

import hashlib
import io
import os

import pytest
import zstandard

from rdsbackup.manifest import Manifest
from rdsbackup.storage.crypto import DecryptionFailed
from rdsbackup.storage.keys import Keyring, KeyUnavailable, SetKey
from rdsbackup.storage.memory import MemoryStorage
from rdsbackup.storage.streams import COMPRESSIONS, ChecksumMismatch, SetReader, SetWriter

ROW = b"customer 4711 <ada@example.com> owes 12.50;\n"


def _data(size: int) -> bytes:
    rows = b"".join(ROW.replace(b"4711", str(i).encode()) for i in range(size // len(ROW) + 1))
    return rows[:size]


def _manifest(writer: SetWriter, key: SetKey | None) -> Manifest:
    return Manifest(
        instance_id="rm-1",
        engine="MariaDB",
        engine_version="10.11",
        method="Logical",
        kind="FullBackup",
        strategy="instance",
        databases=["shop"],
        objects=sorted(writer.objects, key=lambda o: o.name),
        started_at="2026-12-02T00:00:00Z",
        finished_at="2026-12-02T00:00:01Z",
        encryption=key.manifest_fields() if key else {},
    )


def _write(
    storage: MemoryStorage, ring: Keyring, compression: str, objects: dict[str, bytes]
) -> Manifest:
    key = ring.new_set_key(chunk_size=4096)
    writer = SetWriter(storage, "rm-1/1", compression=compression, encryption=key)
    for name, data in objects.items():
        writer.put(name, io.BytesIO(data))
    return _manifest(writer, key)


@pytest.fixture
def ring() -> Keyring:
    return Keyring({"k1": os.urandom(32)}, "k1")


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_an_encrypted_set_reads_back_and_its_stored_bytes_are_not_the_data(
    ring: Keyring, compression: str
) -> None:
    storage = MemoryStorage()
    objects = {"dump.sql": _data(300_000), "empty": b"", "one": b"x"}
    manifest = _write(storage, ring, compression, objects)
    reader = SetReader(storage, "rm-1/1", manifest, ring)
    for name, data in objects.items():
        with reader.open(name) as f:
            assert f.read() == data
    for obj in manifest.objects:
        stored = storage.read_bytes("rm-1/1/" + obj.name)
        assert stored[:4] == b"RDSE"
        assert obj.size == len(stored)
        assert obj.sha256 == hashlib.sha256(stored).hexdigest()  # of the stored bytes
        assert b"customer 1" not in stored and b"example.com" not in stored
    reader.verify_all()  # checksums check without decrypting


def test_open_stored_gives_the_decrypted_compressed_bytes(ring: Keyring) -> None:
    storage = MemoryStorage()
    manifest = _write(storage, ring, "zstd", {"data.xb": _data(100_000)})
    stream, compression = SetReader(storage, "rm-1/1", manifest, ring).open_stored("data.xb")
    with stream:
        compressed = stream.read()
    assert compression == "zstd"
    assert zstandard.ZstdDecompressor().decompressobj().decompress(compressed) == _data(100_000)


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_a_flipped_byte_fails_the_read_naming_the_object(ring: Keyring, compression: str) -> None:
    storage = MemoryStorage()
    manifest = _write(storage, ring, compression, {"dump.sql": os.urandom(50_000)})
    obj = manifest.objects[0]
    stored = bytearray(storage.read_bytes("rm-1/1/" + obj.name))
    stored[len(stored) // 2] ^= 0x40
    storage.write_bytes("rm-1/1/" + obj.name, bytes(stored))
    reader = SetReader(storage, "rm-1/1", manifest, ring)
    with (
        pytest.raises(DecryptionFailed, match=f"object {obj.name} is corrupt"),
        reader.open("dump.sql") as f,
    ):
        f.read()
    with pytest.raises(ChecksumMismatch, match=obj.name):
        reader.verify(obj.name)


def test_a_set_needs_its_key(ring: Keyring) -> None:
    storage = MemoryStorage()
    manifest = _write(storage, ring, "zstd", {"dump.sql": b"rows"})
    with pytest.raises(KeyUnavailable, match="no encryption keys"):
        SetReader(storage, "rm-1/1", manifest)
    other = Keyring({"k1": os.urandom(32)}, "k1")  # same id, another key
    with pytest.raises(KeyUnavailable, match="does not unwrap"):
        SetReader(storage, "rm-1/1", manifest, other)


def test_rotation_old_sets_stay_readable_new_sets_use_the_new_key(ring: Keyring) -> None:
    storage = MemoryStorage()
    old = _write(storage, ring, "zstd", {"dump.sql": b"before rotation"})
    rotated = Keyring({**ring.keys, "k2": os.urandom(32)}, "k2")
    key = rotated.new_set_key()
    writer = SetWriter(storage, "rm-1/2", encryption=key)
    writer.put_bytes("dump.sql", b"after rotation")
    new = _manifest(writer, key)
    assert old.encryption["key_id"] == "k1" and new.encryption["key_id"] == "k2"
    with SetReader(storage, "rm-1/1", old, rotated).open("dump.sql") as f:
        assert f.read() == b"before rotation"
    with SetReader(storage, "rm-1/2", new, rotated).open("dump.sql") as f:
        assert f.read() == b"after rotation"
    with pytest.raises(KeyUnavailable, match="'k2' is not configured"):
        SetReader(storage, "rm-1/2", new, ring)


def test_an_unencrypted_set_reads_as_before_with_or_without_keys(ring: Keyring) -> None:
    storage = MemoryStorage()
    writer = SetWriter(storage, "rm-1/3")
    writer.put_bytes("dump.sql", ROW)
    manifest = _manifest(writer, None)
    assert manifest.encryption == {}
    for keys in (None, ring):
        with SetReader(storage, "rm-1/3", manifest, keys).open("dump.sql") as f:
            assert f.read() == ROW
    assert Manifest.from_json(manifest.to_json()) == manifest
