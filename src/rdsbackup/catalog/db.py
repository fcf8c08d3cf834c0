"""Connecting to the catalog: SQLite (WAL, immediate write transactions) or PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import CursorResult, Engine, Result, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool, QueuePool

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
HEAD_REVISION = "0011"
"""The newest migration (tests/catalog checks it against the migrations folder)."""


def affected(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE touched."""
    return int(cast(CursorResult[Any], result).rowcount or 0)


class Catalog:
    """Sessions over the catalog database.

    ``write()`` takes the database's write lock at BEGIN on SQLite (``BEGIN IMMEDIATE``),
    so read-check-insert sequences are serialised; on PostgreSQL callers lock rows
    (``SELECT ... FOR UPDATE``) and unique indexes do the rest.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.engine = _make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(
            self.engine.execution_options(rdsbackup_immediate=True), expire_on_commit=False
        )

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._sessions() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        with self._write_sessions() as session, session.begin():
            yield session

    @property
    def in_memory(self) -> bool:
        return self.is_sqlite and make_url(self.url).database in (None, "", ":memory:")

    def revision(self) -> str | None:
        """The migration the schema is at (None: never migrated)."""
        with self.engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            found = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            return None if found is None else str(found)

    def upgrade(self, *, apart: bool = False) -> None:
        """Bring the schema to the newest migration. With ``apart`` (the service does
        this), Alembic runs in a child process, so a long-lived process never holds its
        modules: 8-9 MB of resident memory for the life of the service."""
        if self.revision() == HEAD_REVISION:
            return
        if not apart or self.in_memory:
            migrate(self.engine, self.url)
            return
        done = subprocess.run(
            [sys.executable, "-m", "rdsbackup.catalog.migrate"],
            input=self.url.encode(),  # not on the command line: it may hold a password
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            said = done.stderr.decode("utf-8", "replace").strip().splitlines()
            raise RuntimeError(f"catalog migration failed: {said[-1] if said else done}")

    def dispose(self) -> None:
        self.engine.dispose()


def migrate(engine: Engine, url: str) -> None:
    from alembic import command

    with engine.begin() as conn:
        cfg = alembic_config(url)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _make_engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    path = url.split(":///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    # Pooled: opening a SQLite connection (file, schema, PRAGMAs) costs more than most
    # of the queries it serves. An in-memory database lives only as long as its one
    # connection, so it is not pooled.
    memory = not path or path == ":memory:"
    engine = create_engine(
        url,
        connect_args={"timeout": 60, "check_same_thread": False},
        poolclass=NullPool if memory else QueuePool,
        **({} if memory else {"pool_size": 8, "max_overflow": 16}),
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # pysqlite's own transaction handling is off; BEGIN is emitted below.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("rdsbackup_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine
