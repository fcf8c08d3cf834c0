"""EnableBackupEncryption (SDK 16.0.2) and the extension DisableBackupEncryption.

``EncryptionKey`` names a key-encryption key of the service's ``encryption_keys`` (at
Alibaba: a KMS key); absent, the sets are wrapped by the key active when each backup
runs. Both take effect for the sets taken afterwards.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rdsbackup.api.params import Params
from rdsbackup.api.protocol import Call
from rdsbackup.service.encryption import EncryptionService

if TYPE_CHECKING:
    from rdsbackup.api.actions import Handler, Services


def _encryption(svc: Services) -> EncryptionService:
    assert svc.encryption is not None
    return svc.encryption


def enable_backup_encryption(call: Call, svc: Services) -> dict[str, Any]:
    p = Params(call.params)
    instance_id = p.required("DBInstanceName")
    key_id = p.optional("EncryptionKey")
    _encryption(svc).enable(call.principal, instance_id, key_id)
    return {"DBInstanceId": instance_id}


def disable_backup_encryption(call: Call, svc: Services) -> dict[str, Any]:
    p = Params(call.params)
    instance_id = p.required("DBInstanceName")
    _encryption(svc).disable(call.principal, instance_id)
    return {"DBInstanceId": instance_id}


ACTIONS: dict[str, Handler] = {
    "EnableBackupEncryption": enable_backup_encryption,
    "DisableBackupEncryption": disable_backup_encryption,
}
