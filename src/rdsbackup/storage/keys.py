"""Envelope keys: a random data key per backup set, wrapped by a key-encryption key
(KEK) from the settings.

The wrapped key is ``base64(nonce (12) | AES-256-GCM(KEK, data key) | tag (16))`` with
the associated data ``rdsbackup data key | KEK id``, so a wrapped key relabelled with
another id fails to unwrap. The set records the KEK's id and the wrapped key (in its
manifest and in the catalog): with the KEK alone a downloaded set can be decrypted.
Rotation: a new active id wraps the keys of new sets; every id still in the keyring
unwraps the sets that name it.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from rdsbackup.storage.base import StorageError
from rdsbackup.storage.crypto import ALGORITHM, DEFAULT_CHUNK, KEY_SIZE

KEY_WRAP = "AES-256-GCM"
FORMAT = "rdsbackup-chunked-aead-v1"
_WRAP_AAD = b"rdsbackup data key|"


class KeyUnavailable(StorageError):
    """The set's data key cannot be had: its KEK id is not configured, or the wrapped
    key does not unwrap (a damaged manifest, or another key under the same id)."""


@dataclass(frozen=True)
class SetKey:
    """The encryption of one set: its data key and how it is recorded."""

    key_id: str
    wrapped_key: str
    data_key: bytes = field(repr=False)
    chunk_size: int = DEFAULT_CHUNK

    def manifest_fields(self) -> dict[str, str]:
        return {
            "algorithm": ALGORITHM,
            "format": FORMAT,
            "chunk_size": str(self.chunk_size),
            "key_id": self.key_id,
            "key_wrap": KEY_WRAP,
            "wrapped_key": self.wrapped_key,
        }

    def described(self) -> str:
        """DescribeBackups' ``Encryption`` (a JSON string, as Alibaba's)."""
        return describe_encryption(self.key_id)


def describe_encryption(key_id: str | None) -> str:
    if not key_id:
        return "{}"
    return json.dumps({"EncryptionAlgorithm": ALGORITHM, "KeyId": key_id}, separators=(",", ":"))


def decode_key(key_id: str, text: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"encryption key {key_id!r} is not base64") from None
    if len(key) != KEY_SIZE:
        raise ValueError(f"encryption key {key_id!r} must be 32 bytes (base64 of 32 bytes)")
    return key


@dataclass(frozen=True)
class Keyring:
    keys: Mapping[str, bytes] = field(repr=False)
    active: str

    def __post_init__(self) -> None:
        if self.active not in self.keys:
            raise ValueError(f"the active encryption key id {self.active!r} is not configured")
        for key_id, key in self.keys.items():
            if len(key) != KEY_SIZE or not key_id or len(key_id) > 64:
                raise ValueError(f"encryption key {key_id!r}: a 1-64 character id, 32 bytes")

    @classmethod
    def from_settings(cls, keys: Mapping[str, str], active: str) -> Keyring:
        """From ``Settings.resolved_encryption_keys()``: ids -> base64 keys."""
        return cls({k: decode_key(k, v) for k, v in keys.items()}, active)

    def has(self, key_id: str) -> bool:
        return key_id in self.keys

    def _kek(self, key_id: str) -> AESGCM:
        key = self.keys.get(key_id)
        if key is None:
            raise KeyUnavailable(f"encryption key {key_id!r} is not configured")
        return AESGCM(key)

    def new_set_key(self, key_id: str | None = None, chunk_size: int = DEFAULT_CHUNK) -> SetKey:
        key_id = key_id or self.active
        data_key = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(12)
        sealed = self._kek(key_id).encrypt(nonce, data_key, _WRAP_AAD + key_id.encode())
        wrapped = base64.b64encode(nonce + sealed).decode()
        return SetKey(key_id, wrapped, data_key, chunk_size)

    def unwrap(self, key_id: str, wrapped_key: str) -> bytes:
        kek = self._kek(key_id)
        try:
            raw = base64.b64decode(wrapped_key, validate=True)
            return kek.decrypt(raw[:12], raw[12:], _WRAP_AAD + key_id.encode())
        except (binascii.Error, ValueError, InvalidTag):
            raise KeyUnavailable(
                f"the data key does not unwrap with encryption key {key_id!r} "
                "(the wrapped key is damaged, or the key under that id is another one)"
            ) from None

    def set_key(self, fields: Mapping[str, str]) -> SetKey:
        """The data key of a set from its manifest's ``encryption`` fields."""
        if fields.get("algorithm") != ALGORITHM or fields.get("format") != FORMAT:
            raise KeyUnavailable(
                f"unknown encryption {fields.get('algorithm')!r} / {fields.get('format')!r}"
            )
        try:
            key_id, wrapped = fields["key_id"], fields["wrapped_key"]
            chunk_size = int(fields["chunk_size"])
        except (KeyError, ValueError) as e:
            raise KeyUnavailable(f"the manifest's encryption fields are incomplete: {e}") from None
        return SetKey(key_id, wrapped, self.unwrap(key_id, wrapped), chunk_size)
