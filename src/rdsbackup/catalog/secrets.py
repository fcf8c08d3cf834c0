"""Secrets at rest (access key secrets, database passwords): Fernet with the service key."""

from __future__ import annotations

import threading
from collections import OrderedDict

from cryptography.fernet import Fernet, InvalidToken

OPENED_KEPT = 4096


class SecretBox:
    """``open`` keeps the last :data:`OPENED_KEPT` opened secrets by ciphertext: every
    signed call opens its key's secret and every admission an instance password, and
    Fernet's HMAC check plus AES is a tenth of a CreateBackup's CPU. A ciphertext never
    changes meaning (a new secret is a new ciphertext), so nothing kept goes stale."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)
        self._opened: OrderedDict[bytes, str] = OrderedDict()
        self._lock = threading.Lock()

    def seal(self, secret: str) -> bytes:
        return self._fernet.encrypt(secret.encode())

    def open(self, ciphertext: bytes) -> str:
        with self._lock:
            if (kept := self._opened.get(ciphertext)) is not None:
                self._opened.move_to_end(ciphertext)
                return kept
        try:
            secret = self._fernet.decrypt(ciphertext).decode()
        except InvalidToken as e:
            raise ValueError("secret cannot be decrypted with the configured secret_key") from e
        with self._lock:
            self._opened[ciphertext] = secret
            if len(self._opened) > OPENED_KEPT:
                self._opened.popitem(last=False)
        return secret
