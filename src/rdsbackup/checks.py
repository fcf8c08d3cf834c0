"""``rdsbackup check``, as ``pgbackrest check``: can each instance be backed up right
now? Run on the service host with the service's settings; it reads the catalog and
asks each server, and changes nothing.

Per instance: the server answers (version, data size); the tools each method drives
are installed (and their versions); each method's own preconditions (the engine's
``check_plan``: data directory present and readable for Physical/Snapshot ...); the
admin user's rights; the storage folder's free space against the data size (one
uncompressed copy must fit: what a set of incompressible data needs).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.filesize import decimal
from sqlalchemy import select

from rdsbackup.app import Core
from rdsbackup.catalog.models import Instance
from rdsbackup.engines.base import (
    BackupMethod,
    BackupPlan,
    EngineError,
    ServerAccess,
    ToolFailed,
)
from rdsbackup.engines.families import family_of
from rdsbackup.engines.tools import find_binary, tool_version
from rdsbackup.states import InstanceStatus

OK, FAIL = "ok", "fail"

TOOLS: dict[str, dict[str, tuple[str, ...]]] = {
    "MariaDB": {
        "Physical": ("mariadb-backup", "mariabackup"),
        "Logical": ("mariadb-dump", "mysqldump"),
    },
    "PostgreSQL": {"Physical": ("pg_basebackup",), "Logical": ("pg_dump",)},
}
MARIADB_RIGHTS = ("RELOAD", "PROCESS", "LOCK TABLES", "SELECT", "SHOW VIEW")


@dataclass(frozen=True)
class Finding:
    instance_id: str
    engine: str
    check: str
    status: str
    detail: str

    def row(self) -> dict[str, str]:
        return {
            "DBInstanceId": self.instance_id,
            "Engine": self.engine,
            "Check": self.check,
            "Status": self.status,
            "Detail": self.detail,
        }


def check_all(core: Core, instance_id: str | None = None) -> list[Finding]:
    with core.catalog.read() as s:
        query = select(Instance).where(Instance.status != InstanceStatus.DELETED)
        if instance_id is not None:
            query = query.where(Instance.id == instance_id)
        ids = [(i.id, i.engine) for i in s.scalars(query.order_by(Instance.created_at))]
    found: list[Finding] = []
    for iid, engine in ids:
        found.extend(check_instance(core, iid, engine))
    return found


def check_instance(core: Core, instance_id: str, engine_name: str) -> list[Finding]:
    def finding(check: str, ok: bool, detail: str) -> Finding:
        return Finding(instance_id, engine_name, check, OK if ok else FAIL, detail)

    access = core.inventory.access(instance_id)
    engine = core.engines.for_engine(engine_name)
    family = family_of(engine_name).name
    try:
        info = engine.probe(access)
    except EngineError as e:
        return [finding("server", False, e.reason)]
    out = [
        finding("server", True, f"{engine_name} {info.version}, {decimal(info.data_bytes)} of data")
    ]
    out.extend(finding(f"tool {method}", ok, d) for method, ok, d in _tools(family))
    methods_ok = 0
    for method in BackupMethod:
        try:
            engine.check_plan(BackupPlan(method), access)
        except EngineError as e:
            out.append(finding(f"method {method.value}", False, e.reason))
        else:
            methods_ok += 1
            out.append(finding(f"method {method.value}", True, "can run"))
    if methods_ok == 0:
        out.append(finding("backup", False, "no backup method can run"))
    ok, detail = _rights(family, access)
    out.append(finding("rights", ok, detail))
    out.append(_space(core.settings.resolved_storage_dir, info.data_bytes, finding))
    return out


def _tools(family: str) -> list[tuple[str, bool, str]]:
    results: list[tuple[str, bool, str]] = []
    for method, names in TOOLS.get(family, {}).items():
        try:
            binary = _pg_binary(names[0]) if family == "PostgreSQL" else find_binary(*names)
        except ToolFailed as e:
            results.append((method, False, e.reason))
        else:
            results.append((method, True, f"{binary}: {tool_version(binary)}"))
    return results


def _pg_binary(name: str) -> str:
    from rdsbackup.engines.postgres.common import pg_binary

    return pg_binary(name)


def _rights(family: str, access: ServerAccess) -> tuple[bool, str]:
    try:
        if family == "MariaDB":
            return _mariadb_rights(access)
        if family == "PostgreSQL":
            return _postgres_rights(access)
    except EngineError as e:
        return False, e.reason
    return True, "not checked for this engine"


def _mariadb_rights(access: ServerAccess) -> tuple[bool, str]:
    from rdsbackup.engines.mariadb.sql import query

    grants = " ".join(str(row[0]).upper() for row in query(access, "SHOW GRANTS"))
    if "GRANT ALL PRIVILEGES ON *.*" in grants:
        return True, f"{access.user}: ALL PRIVILEGES"
    global_grants = [g for g in grants.split("GRANT ")[1:] if " ON *.* " in g]
    held = " ".join(global_grants)
    missing = [r for r in MARIADB_RIGHTS if r not in held]
    if missing:
        return False, f"{access.user} lacks {', '.join(missing)} on *.*"
    return True, f"{access.user}: {', '.join(MARIADB_RIGHTS)}"


def _postgres_rights(access: ServerAccess) -> tuple[bool, str]:
    from rdsbackup.engines.postgres.common import rows, session

    with session(access) as conn:
        row = rows(
            conn,
            "SELECT rolsuper, rolreplication, pg_has_role(current_user, 'pg_read_all_data',"
            " 'MEMBER') FROM pg_roles WHERE rolname = current_user",
        )[0]
    superuser, replication, read_all = bool(row[0]), bool(row[1]), bool(row[2])
    if superuser:
        return True, f"{access.user}: superuser"
    missing = [
        name
        for name, held in (("REPLICATION", replication), ("pg_read_all_data", read_all))
        if not held
    ]
    if missing:
        return False, f"{access.user} lacks {' and '.join(missing)}"
    return True, f"{access.user}: REPLICATION, pg_read_all_data"


def _space(
    storage_dir: Path, data_bytes: int, finding: Callable[[str, bool, str], Finding]
) -> Finding:
    probe = storage_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    detail = f"{decimal(free)} free in {storage_dir}; the data is {decimal(data_bytes)}"
    return finding("space", free >= data_bytes, detail)
