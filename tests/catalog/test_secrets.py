"""SecretBox: secrets open to what was sealed, the opened ones are kept by ciphertext
(bounded), and a ciphertext of another key is refused every time."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from rdsbackup.catalog import secrets
from rdsbackup.catalog.secrets import SecretBox


def test_opens_what_it_sealed_and_keeps_it(monkeypatch: pytest.MonkeyPatch) -> None:
    box = SecretBox(Fernet.generate_key())
    sealed = box.seal("s3cret")
    assert box.open(sealed) == "s3cret"
    calls: list[bytes] = []
    decrypt = box._fernet.decrypt

    def counted(token: bytes) -> bytes:
        calls.append(token)
        return decrypt(token)

    monkeypatch.setattr(box._fernet, "decrypt", counted)
    assert box.open(sealed) == "s3cret"
    assert calls == []  # kept: no second decryption
    other = box.seal("s3cret")  # the same secret sealed again: another ciphertext
    assert other != sealed and box.open(other) == "s3cret"
    assert calls == [other]


def test_keeps_at_most_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(secrets, "OPENED_KEPT", 3)
    box = SecretBox(Fernet.generate_key())
    sealed = [box.seal(f"p{i}") for i in range(5)]
    assert [box.open(c) for c in sealed] == [f"p{i}" for i in range(5)]
    assert len(box._opened) == 3
    assert list(box._opened) == sealed[2:]  # the least recently opened went first


def test_a_ciphertext_of_another_key_is_refused_every_time() -> None:
    sealed = SecretBox(Fernet.generate_key()).seal("x")
    box = SecretBox(Fernet.generate_key())
    for _ in range(2):
        with pytest.raises(ValueError, match="secret_key"):
            box.open(sealed)
    assert not box._opened
