"""The operator's retention commands against a real settings state folder (SQLite catalog,
local storage): ``backup pin|unpin``, ``retention plan`` (changes nothing), ``retention
apply`` and ``retention gfs``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from rdsbackup.app import build_core
from rdsbackup.catalog.db import Catalog
from rdsbackup.catalog.models import BackupSet, policy_for
from rdsbackup.cli import app
from rdsbackup.config import Settings
from rdsbackup.storage.local import LocalStorage
from tests.fixtures.backup_sets import T0, add_instance, add_set, set_ids, stored_sets

INSTANCE = "rm-cli1"


@dataclass
class State:
    config: Path
    catalog: Catalog
    storage: LocalStorage
    old: int
    other: int
    fresh: int

    def run(self, *args: str) -> Any:
        return CliRunner().invoke(app, [*args, "--config", str(self.config)])

    def rows(self, *args: str) -> list[dict[str, str]]:
        result = self.run("retention", "plan", "--json", *args)
        assert result.exit_code == 0, result.output
        return [json.loads(line) for line in result.output.splitlines()]


@pytest.fixture
def state(tmp_path: Path) -> Iterator[State]:
    config = tmp_path / "rdsbackup.toml"
    config.write_text(f'state_dir = "{tmp_path / "state"}"\n')
    core = build_core(Settings(state_dir=tmp_path / "state"))
    storage = LocalStorage(core.settings.resolved_storage_dir)
    add_instance(core.catalog, INSTANCE)
    old = add_set(core.catalog, storage, INSTANCE, T0, 7)
    other = add_set(core.catalog, storage, INSTANCE, T0, 7)
    fresh = add_set(core.catalog, storage, INSTANCE, T0, None)  # kept forever
    yield State(config, core.catalog, storage, old, other, fresh)
    core.catalog.dispose()


def test_pin_keeps_a_set_out_of_the_plan_until_unpinned(state: State) -> None:
    result = state.run("backup", "pin", str(state.old))
    assert result.exit_code == 0, result.output
    with state.catalog.read() as s:
        assert s.get_one(BackupSet, state.old).pinned
    rows = {r["BackupId"]: r for r in state.rows()}
    assert set(rows) == {str(state.old), str(state.other)}  # the -1 set never expires
    assert (rows[str(state.old)]["Action"], rows[str(state.old)]["Reason"]) == ("Keep", "Pinned")
    assert (rows[str(state.other)]["Action"], rows[str(state.other)]["Reason"]) == (
        "Remove",
        "Expired",
    )

    assert state.run("backup", "unpin", str(state.old)).exit_code == 0
    assert {r["Action"] for r in state.rows("--instance", INSTANCE)} == {"Remove"}
    assert state.rows("--at", "2025-01-08T01:59:00Z") == []  # a minute before the expiry
    assert len(state.rows("--at", "2025-01-08T02:01:00Z")) == 2


def test_plan_changes_nothing_and_apply_removes(state: State) -> None:
    def snapshot() -> tuple[list[tuple[Any, ...]], set[int]]:
        with state.catalog.read() as s:
            rows = s.execute(
                select(BackupSet.id, BackupSet.is_avail, BackupSet.deleting_at).order_by(
                    BackupSet.id
                )
            )
            return [tuple(r) for r in rows], stored_sets(state.storage, INSTANCE)

    before = snapshot()
    table = state.run("retention", "plan")
    assert table.exit_code == 0, table.output
    assert "Expired" in table.output and "2 sets would go, 0 stay" in table.output
    assert snapshot() == before

    applied = state.run("retention", "apply", "--json")
    assert applied.exit_code == 0, applied.output
    summary = json.loads(applied.output.splitlines()[-1])
    assert summary == {"Removed": sorted([str(state.old), str(state.other)]), "Resumed": []}
    assert set_ids(state.catalog) == stored_sets(state.storage, INSTANCE) == {state.fresh}


def test_gfs_counts_are_stored_on_the_policy(state: State) -> None:
    result = state.run("retention", "gfs", INSTANCE, "--monthly", "12", "--yearly", "3")
    assert result.exit_code == 0, result.output
    with state.catalog.read() as s:
        policy = policy_for(s, INSTANCE)
        assert (policy.gfs_weekly_count, policy.gfs_monthly_count, policy.gfs_yearly_count) == (
            0,
            12,
            3,
        )
    assert state.run("retention", "gfs", INSTANCE, "--monthly", "-1").exit_code != 0


def test_unknown_names_are_refused(state: State) -> None:
    pin = state.run("backup", "pin", "999")
    assert pin.exit_code == 1 and "no backup set 999" in pin.output
    plan = state.run("retention", "plan", "--instance", "rm-nope")
    assert plan.exit_code == 1 and "no instance rm-nope" in plan.output
    assert state.run("retention", "plan", "--at", "next week").exit_code == 2
