"""MariaDB administration: PyMySQL for SQL, ``mariadb-dump | mariadb`` to copy a database,
``CHECKSUM TABLE ... EXTENDED`` to fingerprint and ``CHECK TABLE`` to check."""

from __future__ import annotations

import subprocess
from typing import Any

from rdsbackup.engines.admin import DatabaseAdmin, Fingerprint
from rdsbackup.engines.base import EngineError, ServerAccess
from rdsbackup.engines.mariadb.engine import SYSTEM_SCHEMAS, connect
from rdsbackup.engines.mariadb.sql import quote_name as quote
from rdsbackup.engines.mariadb.sql import table_fingerprint
from rdsbackup.engines.tools import ToolProcess, find_binary, mysql_option_file


def _rows(access: ServerAccess, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = connect(access)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())
    finally:
        conn.close()


class MariaDBAdmin(DatabaseAdmin):
    def user_databases(self, access: ServerAccess) -> list[str]:
        names = [r[0] for r in _rows(access, "SHOW DATABASES")]
        return sorted(n for n in names if n not in SYSTEM_SCHEMAS)

    def drop_database(self, access: ServerAccess, name: str) -> None:
        _rows(access, f"DROP DATABASE IF EXISTS {quote(name)}")

    def copy_database(
        self, source: ServerAccess, name: str, target: ServerAccess, new_name: str
    ) -> None:
        found = _rows(
            source,
            "SELECT default_character_set_name, default_collation_name "
            "FROM information_schema.schemata WHERE schema_name = %s",
            (name,),
        )
        if not found:
            raise EngineError(f"database {name!r} does not exist on the source")
        charset, collation = found[0]
        _rows(
            target, f"CREATE DATABASE {quote(new_name)} CHARACTER SET {charset} COLLATE {collation}"
        )
        try:
            self._pipe(source, name, target, new_name)
        except EngineError:
            self.drop_database(target, new_name)
            raise

    def _pipe(self, source: ServerAccess, name: str, target: ServerAccess, new_name: str) -> None:
        with (
            mysql_option_file(source.host, source.port, source.user, source.password) as src,
            mysql_option_file(target.host, target.port, target.user, target.password) as tgt,
        ):
            dump = ToolProcess(
                [
                    find_binary("mariadb-dump", "mysqldump"),
                    f"--defaults-extra-file={src}",
                    "--single-transaction",
                    "--quick",
                    "--routines",
                    "--events",
                    "--triggers",
                    "--hex-blob",
                    "--skip-lock-tables",
                    "--",
                    name,
                ]
            )
            with dump:
                load = ToolProcess(
                    [
                        find_binary("mariadb", "mysql"),
                        f"--defaults-extra-file={tgt}",
                        "--binary-mode",
                        "--max-allowed-packet=1G",
                        "--",
                        new_name,
                    ],
                    stdin=dump.stdout,
                    stdout=subprocess.DEVNULL,
                )
                with load:
                    dump.stdout.close()
                    load.check()
                dump.check()

    def fingerprint(self, access: ServerAccess, databases: list[str]) -> Fingerprint:
        result: Fingerprint = {}
        conn = connect(access)
        try:
            with conn.cursor() as cur:
                for db in databases:
                    cur.execute(
                        "SELECT table_name FROM information_schema.tables "
                        "WHERE table_schema = %s AND table_type = 'BASE TABLE' "
                        "ORDER BY table_name",
                        (db,),
                    )
                    for (table,) in list(cur.fetchall()):
                        result[f"{db}.{table}"] = table_fingerprint(cur, db, table)
        finally:
            conn.close()
        return result

    def check(self, access: ServerAccess, databases: list[str]) -> list[str]:
        problems: list[str] = []
        for db in databases:
            tables = _rows(
                access,
                "SELECT table_name FROM information_schema.tables WHERE "
                "table_schema = %s AND table_type = 'BASE TABLE'",
                (db,),
            )
            for (table,) in tables:
                for row in _rows(access, f"CHECK TABLE {quote(db)}.{quote(table)} EXTENDED"):
                    msg_type, text = str(row[2]).lower(), str(row[3])
                    if msg_type == "error" or (msg_type == "status" and text != "OK"):
                        problems.append(f"{db}.{table}: {text}")
        return problems
