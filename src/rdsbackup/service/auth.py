"""Accounts, access keys and request nonces."""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, field
from datetime import datetime
from fnmatch import fnmatchcase

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError

from rdsbackup.catalog.db import Catalog, affected
from rdsbackup.catalog.models import AccessKey, Account, Nonce
from rdsbackup.catalog.secrets import SecretBox
from rdsbackup.service.errors import InvalidValue, ServiceError
from rdsbackup.states import KeyStatus
from rdsbackup.timeutil import utcnow

READ_ONLY_ACTIONS = "Describe*"


@dataclass(frozen=True)
class Principal:
    account_id: int
    account_name: str
    access_key_id: str
    actions: tuple[str, ...] = ("*",)

    def may_call(self, action: str) -> bool:
        return any(fnmatchcase(action, pattern) for pattern in self.actions)


@dataclass(frozen=True)
class KeyRecord:
    principal: Principal
    secret: str = field(repr=False)
    active: bool


@dataclass(frozen=True)
class KeyInfo:
    access_key_id: str
    account: str
    status: str
    actions: str
    created_at: datetime


class KeyStore:
    def __init__(self, catalog: Catalog, box: SecretBox) -> None:
        self.catalog = catalog
        self.box = box

    def lookup(self, access_key_id: str) -> KeyRecord | None:
        with self.catalog.read() as s:
            row = s.execute(
                select(
                    AccessKey.account_id,
                    Account.name,
                    AccessKey.actions,
                    AccessKey.secret_ciphertext,
                    AccessKey.status,
                )
                .join(Account, Account.id == AccessKey.account_id)
                .where(AccessKey.access_key_id == access_key_id)
            ).one_or_none()
        if row is None:
            return None
        account_id, account_name, actions, ciphertext, status = row
        principal = Principal(
            account_id=account_id,
            account_name=account_name,
            access_key_id=access_key_id,
            actions=tuple(a.strip() for a in actions.split(",") if a.strip()),
        )
        return KeyRecord(principal, self.box.open(ciphertext), status == KeyStatus.ACTIVE)

    def use_nonce(self, access_key_id: str, nonce: str, expires_at: datetime) -> bool:
        """Record a nonce; False when it was already used (and has not expired)."""
        try:
            with self.catalog.write() as s:
                s.execute(
                    insert(Nonce).values(
                        access_key_id=access_key_id, nonce=nonce, expires_at=expires_at
                    )
                )
        except IntegrityError:
            return False
        return True

    def purge_nonces(self, now: datetime | None = None) -> int:
        with self.catalog.write() as s:
            result = s.execute(delete(Nonce).where(Nonce.expires_at < (now or utcnow())))
            return affected(result)


class AccountAdmin:
    """The operator's side: accounts and their access keys."""

    def __init__(self, catalog: Catalog, box: SecretBox) -> None:
        self.catalog = catalog
        self.box = box

    def ensure_account(self, name: str) -> int:
        with self.catalog.write() as s:
            account = s.scalar(select(Account).where(Account.name == name))
            if account is None:
                uid = str(10**15 + secrets.randbelow(9 * 10**15))
                account = Account(name=name, uid=uid, created_at=utcnow())
                s.add(account)
                s.flush()
            return account.id

    def create_key(
        self,
        account: str,
        *,
        actions: str = "*",
        description: str = "",
        access_key_id: str | None = None,
        secret: str | None = None,
    ) -> tuple[str, str]:
        """Create a key; returns (AccessKeyId, AccessKeySecret). The secret is shown once."""
        patterns = [a.strip() for a in actions.split(",") if a.strip()]
        if not patterns:
            raise InvalidValue("actions", "at least one action pattern is needed")
        account_id = self.ensure_account(account)
        key_id = access_key_id or "LTAI" + _random(20)
        key_secret = secret or _random(30)
        with self.catalog.write() as s:
            if s.scalar(select(AccessKey.id).where(AccessKey.access_key_id == key_id)):
                raise ServiceError(f"access key {key_id} already exists")
            s.add(
                AccessKey(
                    access_key_id=key_id,
                    secret_ciphertext=self.box.seal(key_secret),
                    account_id=account_id,
                    status=KeyStatus.ACTIVE,
                    actions=",".join(patterns),
                    description=description,
                    created_at=utcnow(),
                )
            )
        return key_id, key_secret

    def set_key_status(self, access_key_id: str, active: bool) -> None:
        with self.catalog.write() as s:
            key = s.scalar(select(AccessKey).where(AccessKey.access_key_id == access_key_id))
            if key is None:
                raise ServiceError(f"no access key {access_key_id}")
            key.status = KeyStatus.ACTIVE if active else KeyStatus.INACTIVE

    def list_keys(self) -> list[KeyInfo]:
        with self.catalog.read() as s:
            keys = s.scalars(select(AccessKey).order_by(AccessKey.id)).all()
            return [
                KeyInfo(k.access_key_id, k.account.name, k.status, k.actions, k.created_at)
                for k in keys
            ]


def _random(length: int) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))
