"""The engine drivers the service runs, by family (:mod:`rdsbackup.engines.families`)."""

from __future__ import annotations

from rdsbackup.engines.base import Engine
from rdsbackup.engines.families import FAMILIES, family_of


class EngineRegistry:
    def __init__(self, engines: dict[str, Engine]) -> None:
        self._engines = engines

    def for_engine(self, engine: str) -> Engine:
        try:
            return self._engines[family_of(engine).name]
        except KeyError:
            raise KeyError(f"no engine driver for {engine!r}") from None


def default_registry() -> EngineRegistry:
    return EngineRegistry({f.name: f.driver() for f in FAMILIES})
