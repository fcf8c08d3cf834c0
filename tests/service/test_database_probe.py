"""InstanceService asks the server about unknown DBNames a few times at once, then
once per window."""

from __future__ import annotations

from typing import Any

import pytest

from rdsbackup.service import errors
from rdsbackup.service.instances import PROBE_BURST, InstanceService


class Inventory:
    def __init__(self) -> None:
        self.probes = 0

    def database_names(self, instance_id: str) -> set[str]:
        return {"shop"}

    def probe(self, instance_id: str) -> None:
        self.probes += 1


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_unknown_names_probe_the_server_at_most_once_per_window() -> None:
    inventory, clock = Inventory(), Clock()
    service = InstanceService(Any, inventory, probe_seconds=1.0, clock=clock)  # type: ignore[arg-type]
    for n in range(500):
        with pytest.raises(errors.DatabaseNotFound):
            service.require_databases("rm-1", ["shop", f"nope{n}"])
    assert inventory.probes == PROBE_BURST
    clock.now += 1.0
    service.require_databases("rm-1", ["shop"])  # known: no probe
    assert inventory.probes == PROBE_BURST
    with pytest.raises(errors.DatabaseNotFound):
        service.require_databases("rm-1", ["later"])
    assert inventory.probes == PROBE_BURST + 1
    with pytest.raises(errors.DatabaseNotFound):
        service.require_databases("rm-1", ["later"])
    assert inventory.probes == PROBE_BURST + 1  # one a second
    with pytest.raises(errors.DatabaseNotFound):
        service.require_databases("rm-2", ["x"])  # another instance has its own window
    assert inventory.probes == PROBE_BURST + 2
