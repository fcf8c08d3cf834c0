"""The action table: Alibaba action name -> handler(call, services) -> response body."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rdsbackup.api.protocol import Call
from rdsbackup.service.backups import BackupService
from rdsbackup.service.encryption import EncryptionService
from rdsbackup.service.instances import InstanceService
from rdsbackup.service.links import LinkMaker
from rdsbackup.service.logs import LogService
from rdsbackup.service.policies import PolicyService
from rdsbackup.service.releases import ReleaseService
from rdsbackup.service.restores import RestoreService


@dataclass(frozen=True)
class Services:
    backups: BackupService
    instances: InstanceService
    links: LinkMaker | None = None
    restores: RestoreService | None = None
    releases: ReleaseService | None = None
    policies: PolicyService | None = None
    encryption: EncryptionService | None = None
    logs: LogService | None = None


Handler = Callable[[Call, Services], dict[str, Any]]


def action_table() -> dict[str, Handler]:
    from rdsbackup.api.actions import backups, encryption, instances, logs, policies, restores

    return {
        **backups.ACTIONS,
        **instances.ACTIONS,
        **restores.ACTIONS,
        **policies.ACTIONS,
        **encryption.ACTIONS,
        **logs.ACTIONS,
    }
