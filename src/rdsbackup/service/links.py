"""Signed, expiring download links for backup sets, and their verification.

A link is ``<base>/download/<BackupId>[/<object>]?Expires=<unix>&Set=<tag>&Signature=<hex>``.
Without ``/<object>`` it serves the whole set as one tar archive. The signature is
HMAC-SHA256, under a key derived from the service's secret key for this use only, of
the backup id, the scope (whole set or one named object), the expiry and the set's tag.

The tag (the first 16 hex digits of the set's ``Checksum``) ties the link to one set,
not just to one id: SQLite reuses the id of the newest row once it is deleted, and a
link must never reach a later set (maybe another account's) that got the same id. It
travels in the link so that the signature can be checked before the catalog is asked
anything.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from rdsbackup.engines.base import BackupMethod
from rdsbackup.service.views import BackupView
from rdsbackup.states import BackupStatus

KEY_PURPOSE = b"rdsbackup download links v1"
TAG_LENGTH = 16


class LinkRejected(Exception):
    """The link was not made by this service, was altered, or has expired."""


@dataclass(frozen=True)
class LinkTarget:
    backup_id: int
    set_tag: str
    object_name: str | None
    """``None``: the whole set, as a tar archive."""
    expires: int

    def message(self) -> bytes:
        """What is signed; JSON, so that no choice of fields can pass for another."""
        fields = ["download", self.backup_id, self.object_name, self.expires, self.set_tag]
        return json.dumps(fields).encode()


def set_tag(checksum: str) -> str:
    return checksum[:TAG_LENGTH]


class LinkSigner:
    def __init__(self, secret_key: bytes) -> None:
        self._key = hmac.new(secret_key, KEY_PURPOSE, hashlib.sha256).digest()

    def sign(self, target: LinkTarget) -> str:
        return hmac.new(self._key, target.message(), hashlib.sha256).hexdigest()

    def verify(self, target: LinkTarget, signature: str, now: float | None = None) -> None:
        expected = self.sign(target)
        if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
            raise LinkRejected("The download link's signature does not match.")
        if (time.time() if now is None else now) > target.expires:
            raise LinkRejected("The download link has expired.")


@dataclass(frozen=True)
class DbLink:
    database: str
    url: str
    intranet_url: str


@dataclass(frozen=True)
class SetLinks:
    url: str
    intranet_url: str
    by_db: list[DbLink]


DbObjects = Callable[[int, str], dict[str, str]]
"""``db_objects(backup_id, checksum)``: database name -> stored object name, for sets
holding one object per database (else empty)."""


class LinkMaker:
    def __init__(
        self,
        signer: LinkSigner,
        public_url: str,
        intranet_url: str,
        ttl_seconds: int,
        db_objects: DbObjects | None = None,
    ) -> None:
        self.signer = signer
        self.public_url = public_url.rstrip("/")
        self.intranet_url = intranet_url.rstrip("/")
        self.ttl_seconds = ttl_seconds
        self.db_objects = db_objects

    def target(
        self,
        backup_id: int,
        checksum: str,
        object_name: str | None = None,
        *,
        expires: int | None = None,
    ) -> LinkTarget:
        if expires is None:
            expires = int(time.time()) + self.ttl_seconds
        return LinkTarget(backup_id, set_tag(checksum), object_name, expires)

    def url(self, target: LinkTarget, base: str | None = None) -> str:
        return (base or self.public_url).rstrip("/") + self.path(target)

    def path(self, target: LinkTarget) -> str:
        path = f"/download/{target.backup_id}"
        if target.object_name is not None:
            path += "/" + quote(target.object_name, safe="/")
        query = urlencode(
            {
                "Expires": str(target.expires),
                "Set": target.set_tag,
                "Signature": self.signer.sign(target),
            }
        )
        return f"{path}?{query}"

    def for_set(self, backup: BackupView) -> SetLinks | None:
        """Links for DescribeBackups: only sets that finished and are available."""
        if backup.status != BackupStatus.SUCCESS or not backup.is_avail:
            return None
        whole = self.target(backup.id, backup.checksum)
        by_db = []
        # only Logical sets can have an object per database; asking costs a manifest read
        objects: dict[str, str] = {}
        if self.db_objects is not None and backup.method == BackupMethod.LOGICAL:
            objects = self.db_objects(backup.id, backup.checksum)
        for database, name in objects.items():
            one = self.target(backup.id, backup.checksum, name, expires=whole.expires)
            by_db.append(DbLink(database, self.url(one), self.url(one, self.intranet_url)))
        return SetLinks(self.url(whole), self.url(whole, self.intranet_url), by_db)
