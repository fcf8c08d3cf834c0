"""`make run`'s demo: created once, reused on the next run."""

from __future__ import annotations

from pathlib import Path

from rdsbackup.app import build_core
from rdsbackup.config import Settings
from rdsbackup.demo import ensure_demo


def test_demo_is_created_once_and_reused(server_root: Path) -> None:
    state = server_root / "demo-state"
    core = build_core(Settings(state_dir=state))
    try:
        first = ensure_demo(core)
        assert set(first.instances) == {"MariaDB", "PostgreSQL"}
        assert core.keys.lookup(first.access_key_id) is not None
        databases = core.inventory.database_names(first.instances["PostgreSQL"])
        assert {"shop", "analytics"} <= databases
        again = ensure_demo(build_core(Settings(state_dir=state)))
        assert again == first
        assert len(core.inventory.ids()) == 2
    finally:
        core.supervisor.stop_all()
