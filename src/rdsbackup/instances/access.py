"""From a catalog instance to the engine's view of it."""

from __future__ import annotations

from pathlib import Path

from rdsbackup.catalog.models import Instance
from rdsbackup.catalog.secrets import SecretBox
from rdsbackup.engines.base import ServerAccess


def server_access(instance: Instance, box: SecretBox) -> ServerAccess:
    return ServerAccess(
        host=instance.host,
        port=instance.port,
        user=instance.admin_user,
        password=box.open(instance.password_ciphertext),
        data_dir=Path(instance.data_dir) if instance.data_dir else None,
        os_user=instance.os_user,
    )
