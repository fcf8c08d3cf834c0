"""Engine families by the ``Engine`` names the API uses."""

from __future__ import annotations

from rdsbackup.engines.base import Engine

FAMILIES = {"MariaDB": "MariaDB", "MySQL": "MariaDB", "PostgreSQL": "PostgreSQL"}


class EngineRegistry:
    def __init__(self, engines: dict[str, Engine]) -> None:
        self._engines = engines

    def for_engine(self, engine: str) -> Engine:
        try:
            return self._engines[FAMILIES[engine]]
        except KeyError:
            raise KeyError(f"no engine driver for {engine!r}") from None


def default_registry() -> EngineRegistry:
    from rdsbackup.engines.mariadb import MariaDBEngine
    from rdsbackup.engines.postgres import PostgresEngine

    return EngineRegistry({"MariaDB": MariaDBEngine(), "PostgreSQL": PostgresEngine()})
