"""The per-instance backup encryption switch (EnableBackupEncryption and the extension
DisableBackupEncryption), kept on the instance's backup policy row.

The switch applies to sets taken from then on; existing sets keep what they are. An
instance that never used either action follows the ``encrypt_backups`` setting.
"""

from __future__ import annotations

from rdsbackup.catalog.db import Catalog
from rdsbackup.catalog.models import policy_for
from rdsbackup.service import errors
from rdsbackup.service.auth import Principal
from rdsbackup.service.instances import owned_instance
from rdsbackup.storage.keys import Keyring
from rdsbackup.timeutil import utcnow


class EncryptionService:
    def __init__(self, catalog: Catalog, keyring: Keyring | None) -> None:
        self.catalog = catalog
        self.keyring = keyring

    def enable(self, who: Principal, instance_id: str, key_id: str | None) -> None:
        """Encrypt the instance's new sets, wrapping their keys with ``key_id`` (empty:
        whichever key is active when each backup runs)."""
        if self.keyring is None:
            raise errors.OperationDenied("no backup encryption keys are configured")
        if key_id and not self.keyring.has(key_id):
            raise errors.InvalidValue(
                "EncryptionKey", "No backup encryption key has this id (see encryption_keys)."
            )
        self._set(who, instance_id, True, key_id or "")

    def disable(self, who: Principal, instance_id: str) -> None:
        self._set(who, instance_id, False, "")

    def _set(self, who: Principal, instance_id: str, on: bool, key_id: str) -> None:
        with self.catalog.write() as s:
            owned_instance(s, who, instance_id, lock=True)
            policy = policy_for(s, instance_id)
            policy.backup_encryption = on
            policy.encryption_key_id = key_id
            policy.updated_at = utcnow()
            s.add(policy)
