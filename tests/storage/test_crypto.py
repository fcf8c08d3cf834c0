"""The chunked AES-256-GCM object format: round trips at every size that matters around
chunk boundaries, tampering of every kind detected, ranges decrypted from any chunk,
data keys wrapped and rotated."""

from __future__ import annotations

import io
import os

import pytest

from rdsbackup.storage.crypto import (
    HEADER_SIZE,
    TAG_SIZE,
    DecryptingReader,
    DecryptionFailed,
    EncryptingWriter,
    decrypt_range,
    plaintext_size,
    stored_size,
)
from rdsbackup.storage.keys import Keyring, KeyUnavailable, describe_encryption

CHUNK = 64
KEY = bytes(range(32))


class _Sink:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes | memoryview, /) -> int:
        self.data += data
        return len(data)


def seal(
    plain: bytes, name: str = "data.zst", key: bytes = KEY, pieces: int = 7, chunk: int = CHUNK
) -> bytes:
    sink = _Sink()
    writer = EncryptingWriter(sink, key, name, chunk)
    for i in range(0, len(plain), pieces):  # odd-sized writes, across chunk boundaries
        writer.write(memoryview(plain)[i : i + pieces])
    writer.close()
    return bytes(sink.data)


def unseal(stored: bytes, name: str = "data.zst", key: bytes = KEY) -> bytes:
    with DecryptingReader(io.BytesIO(stored), key, name) as reader:
        return reader.read()


SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 10 * CHUNK + 3]


@pytest.mark.parametrize("size", SIZES)
def test_round_trip_at_and_around_chunk_boundaries(size: int) -> None:
    plain = os.urandom(size)
    stored = seal(plain)
    assert len(stored) == stored_size(size, CHUNK)
    assert plaintext_size(len(stored), CHUNK) == size
    assert unseal(stored) == plain
    if size >= 16:
        assert plain not in stored


def test_a_large_object_in_one_write_and_read_chunk_by_chunk() -> None:
    plain = os.urandom(3 * (1 << 20) + 5)
    sink = _Sink()
    writer = EncryptingWriter(sink, KEY, "big")
    writer.write(plain)
    writer.close()
    reader = DecryptingReader(io.BytesIO(bytes(sink.data)), KEY, "big")
    got = b"".join(iter(reader.read_chunk, b""))
    assert got == plain


def test_two_encryptions_of_the_same_bytes_differ() -> None:
    plain = b"x" * 200
    assert seal(plain)[HEADER_SIZE:] != seal(plain)[HEADER_SIZE:]


def _fails(stored: bytes, name: str = "data.zst", key: bytes = KEY) -> str:
    with pytest.raises(DecryptionFailed) as caught:
        unseal(stored, name, key)
    assert caught.value.name == name
    return str(caught.value)


@pytest.mark.parametrize("where", [0, 5, HEADER_SIZE, HEADER_SIZE + CHUNK + 3, -1])
def test_a_flipped_byte_anywhere_fails_naming_the_object(where: int) -> None:
    stored = bytearray(seal(os.urandom(5 * CHUNK)))
    stored[where] ^= 0x01
    assert "object data.zst is corrupt" in _fails(bytes(stored))


def test_truncation_at_a_chunk_boundary_and_inside_a_chunk_fails() -> None:
    stored = seal(os.urandom(5 * CHUNK + 10))
    record = CHUNK + TAG_SIZE
    assert "chunk 2 fails" in _fails(stored[: HEADER_SIZE + 3 * record])  # 3 whole chunks
    _fails(stored[:-1])
    _fails(stored[: HEADER_SIZE + 10])
    _fails(stored[:HEADER_SIZE])
    _fails(stored[:5])


def test_an_extended_object_fails() -> None:
    stored = seal(os.urandom(3 * CHUNK))
    _fails(stored + b"\0")
    _fails(stored + stored[HEADER_SIZE : HEADER_SIZE + CHUNK + TAG_SIZE])


def test_swapped_chunks_and_chunks_from_another_object_fail() -> None:
    record = CHUNK + TAG_SIZE
    stored = seal(os.urandom(4 * CHUNK + 1))
    body = [stored[HEADER_SIZE + i * record : HEADER_SIZE + (i + 1) * record] for i in range(5)]
    swapped = stored[:HEADER_SIZE] + body[1] + body[0] + b"".join(body[2:])
    assert "chunk 0 fails" in _fails(swapped)
    other = seal(os.urandom(4 * CHUNK + 1), name="other.zst")
    mixed = stored[: HEADER_SIZE + record] + other[HEADER_SIZE + record :]
    assert "chunk 1 fails" in _fails(mixed)
    # the whole object under another name: the name is in every chunk's associated data
    _fails(stored, name="renamed.zst")


def test_the_wrong_key_fails() -> None:
    stored = seal(b"secret rows")
    _fails(stored, key=bytes(32))


def test_an_unencrypted_object_is_refused() -> None:
    assert "no RDSE header" in _fails(b"\x28\xb5\x2f\xfd" + b"\0" * 40)


def test_ranges_decrypt_from_any_chunk_reading_only_those_chunks() -> None:
    plain = os.urandom(10 * CHUNK + 7)
    stored = seal(plain)
    reads: list[tuple[int, int]] = []

    def read_at(offset: int, length: int) -> bytes:
        reads.append((offset, length))
        return stored[offset : offset + length]

    def plain_range(start: int, stop: int) -> bytes:
        reads.clear()
        return b"".join(decrypt_range(read_at, len(stored), KEY, "data.zst", start, stop))

    for start, stop in [(0, 1), (CHUNK - 1, CHUNK + 1), (3 * CHUNK + 5, 7 * CHUNK), (0, 10**9)]:
        assert plain_range(start, stop) == plain[start:stop]
    assert plain_range(10 * CHUNK + 1, 10 * CHUNK + 7) == plain[-6:]
    assert len(reads) == 2  # the header and the final chunk only
    assert plain_range(5 * CHUNK + 2, 5 * CHUNK + 3) == plain[5 * CHUNK + 2 : 5 * CHUNK + 3]
    assert reads[1] == (HEADER_SIZE + 5 * (CHUNK + TAG_SIZE), CHUNK + TAG_SIZE)


def test_a_range_of_a_truncated_object_fails() -> None:
    stored = seal(os.urandom(4 * CHUNK))
    cut = stored[: HEADER_SIZE + 2 * (CHUNK + TAG_SIZE)]  # the last kept chunk is not final

    def read_at(offset: int, length: int) -> bytes:
        return cut[offset : offset + length]

    with pytest.raises(DecryptionFailed, match="final chunk 1"):
        b"".join(decrypt_range(read_at, len(cut), KEY, "data.zst", CHUNK, 2 * CHUNK))


# -- envelope keys ----------------------------------------------------------------------


def test_data_keys_are_wrapped_by_the_active_key_and_unwrap_after_rotation() -> None:
    old = Keyring({"k1": os.urandom(32)}, "k1")
    first = old.new_set_key()
    assert first.key_id == "k1" and first.data_key not in first.wrapped_key.encode()
    rotated = Keyring({**old.keys, "k2": os.urandom(32)}, "k2")
    second = rotated.new_set_key()
    assert second.key_id == "k2"
    assert rotated.set_key(first.manifest_fields()).data_key == first.data_key
    assert rotated.set_key(second.manifest_fields()).data_key == second.data_key
    with pytest.raises(KeyUnavailable, match="'k2' is not configured"):
        old.set_key(second.manifest_fields())


def test_a_damaged_or_relabelled_wrapped_key_fails_clearly() -> None:
    ring = Keyring({"k1": os.urandom(32), "k2": os.urandom(32)}, "k1")
    fields = ring.new_set_key().manifest_fields()
    flipped = bytearray(fields["wrapped_key"].encode())
    flipped[10] = ord("A") if flipped[10] != ord("A") else ord("B")
    with pytest.raises(KeyUnavailable, match="does not unwrap"):
        ring.set_key({**fields, "wrapped_key": flipped.decode()})
    with pytest.raises(KeyUnavailable, match="does not unwrap"):
        ring.set_key({**fields, "key_id": "k2"})
    with pytest.raises(KeyUnavailable, match="does not unwrap"):
        ring.set_key({**fields, "wrapped_key": "not base64!"})
    with pytest.raises(KeyUnavailable, match="unknown encryption"):
        ring.set_key({**fields, "algorithm": "ROT13"})


def test_a_keyring_refuses_bad_keys() -> None:
    with pytest.raises(ValueError, match="not configured"):
        Keyring({"k1": os.urandom(32)}, "k2")
    with pytest.raises(ValueError, match="32 bytes"):
        Keyring({"k1": os.urandom(16)}, "k1")


def test_describe_encryption_is_a_json_string_as_alibaba() -> None:
    assert describe_encryption(None) == "{}"
    assert describe_encryption("k1") == '{"EncryptionAlgorithm":"AES-256-GCM","KeyId":"k1"}'
