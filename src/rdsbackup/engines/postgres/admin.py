"""PostgreSQL administration: psycopg for SQL, ``pg_dump | pg_restore`` to copy a
database, an order-independent sum of row hashes per table to fingerprint,
``pg_amcheck`` to check."""

from __future__ import annotations

import os
import subprocess

from psycopg import sql

from rdsbackup.engines.admin import DatabaseAdmin, Fingerprint
from rdsbackup.engines.base import EngineError, ServerAccess
from rdsbackup.engines.postgres.common import (
    database_fingerprint,
    pg_binary,
    session,
    tool_env,
)
from rdsbackup.engines.tools import ToolProcess, pg_passfile_env


class PostgresAdmin(DatabaseAdmin):
    def user_databases(self, access: ServerAccess) -> list[str]:
        with session(access) as conn:
            rows = conn.execute(
                "SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY datname"
            ).fetchall()
        return [r[0] for r in rows if r[0] != "postgres"]

    def drop_database(self, access: ServerAccess, name: str) -> None:
        with session(access) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def copy_database(
        self, source: ServerAccess, name: str, target: ServerAccess, new_name: str
    ) -> None:
        with session(source) as conn:
            found = conn.execute(
                "SELECT pg_encoding_to_char(encoding), datcollate, datctype, "
                "pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
                (name,),
            ).fetchone()
        if found is None:
            raise EngineError(f"database {name!r} does not exist on the source")
        encoding, collate, ctype, owner = found
        with session(target) as conn:
            owner_exists = (
                conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (owner,)).fetchone()
                is not None
            )
            conn.execute(
                sql.SQL(
                    "CREATE DATABASE {} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}"
                ).format(
                    sql.Identifier(new_name),
                    sql.Literal(encoding),
                    sql.Literal(collate),
                    sql.Literal(ctype),
                )
            )
        try:
            self._pipe(source, name, target, new_name, keep_owner=owner_exists)
        except EngineError:
            self.drop_database(target, new_name)
            raise

    def _pipe(
        self,
        source: ServerAccess,
        name: str,
        target: ServerAccess,
        new_name: str,
        *,
        keep_owner: bool,
    ) -> None:
        dump = ToolProcess(
            [pg_binary("pg_dump"), "-Fc", "-Z0", "--no-password"], env=tool_env(source, name)
        )
        with dump:
            args = [
                pg_binary("pg_restore"),
                "--exit-on-error",
                "--no-password",
                "--dbname",
                _conninfo(new_name),
            ]
            if not keep_owner:
                args += ["--no-owner", "--no-acl"]
            load = ToolProcess(
                args, stdin=dump.stdout, stdout=subprocess.DEVNULL, env=tool_env(target)
            )
            with load:
                dump.stdout.close()
                load.check()
            dump.check()

    def fingerprint(self, access: ServerAccess, databases: list[str]) -> Fingerprint:
        result: Fingerprint = {}
        for db in databases:
            with session(access, db) as conn:
                result.update(database_fingerprint(conn, db))
        return result

    def check(self, access: ServerAccess, databases: list[str]) -> list[str]:
        if not databases:
            return []
        args = [pg_binary("pg_amcheck"), "--no-password", "--install-missing", "--heapallindexed"]
        for db in databases:
            args += ["--database", db]
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        with pg_passfile_env(inherited | tool_env(access)) as env:
            out = subprocess.run(
                args, env=env, capture_output=True, text=True, timeout=3600, check=False
            )
        if out.returncode == 0:
            return []
        lines = [ln for ln in (out.stdout + out.stderr).splitlines() if ln.strip()]
        return lines[-20:] or [f"pg_amcheck exited with {out.returncode}"]


def _conninfo(dbname: str) -> str:
    escaped = dbname.replace("\\", "\\\\").replace("'", "\\'")
    return f"dbname='{escaped}'"
