"""Faults during MariaDB backups: the server killed, a tool killed, the sink failing.
Each must fail the backup with the tool's (or the server's) own words, leave no tool
running and no lock held."""

from __future__ import annotations

from pathlib import Path

import pytest

from rdsbackup.engines.base import BackupPlan, EngineError, ServerAccess
from rdsbackup.instances.servers import LocalServer
from rdsbackup.storage.base import StorageError
from rdsbackup.storage.local import LocalStorage
from rdsbackup.storage.streams import SetWriter
from tests.engines.test_mariadb_kit import (
    ENGINE,
    LOGICAL,
    PHYSICAL,
    SNAPSHOT,
    ActingSink,
    kill_server,
    kill_tool,
    no_tools_left,
    nothing,
    query,
    source_server,
)
from tests.fixtures.servers import ServerFactory

FIRST_OBJECT = {"Physical": "data.xbstream", "Logical": "data-1.sql", "Snapshot": "datadir.tar"}
PLANS = {"Physical": PHYSICAL, "Logical": LOGICAL, "Snapshot": SNAPSHOT}


@pytest.fixture
def victim(server_factory: ServerFactory) -> LocalServer:
    """A private server with the sample data and a 40 MB table, so that no tool is done
    before the fault strikes."""
    server = source_server(server_factory, rows=100)
    query(
        server.access(),
        "CREATE TABLE shop.big ENGINE=InnoDB"
        " AS SELECT seq AS id, REPEAT('x', 200) AS v FROM shop.seq_1_to_200000",
    )
    return server


def run(access: ServerAccess, plan: BackupPlan, sink: ActingSink) -> None:
    ENGINE.backup(access, plan, sink, lambda _: None)


def commits_go_through(access: ServerAccess) -> bool:
    """No BACKUP STAGE lock is left behind: a commit does not wait."""
    query(access, "CREATE TABLE IF NOT EXISTS shop.after_fault (id INT)")
    query(access, "INSERT INTO shop.after_fault VALUES (1)")
    return True


@pytest.mark.parametrize(
    ("method", "words"),
    [
        ("Physical", r"^mariadb-backup exited with \d+: .*(Lost connection|gone away|connect)"),
        # the dump workers or their lock session, whichever notices first (a dump worker
        # that had not connected yet finds no server)
        (
            "Logical",
            r"^(mariadb-dump exited with \d+|.*(SHOW|SELECT) .* failed): "
            r".*(Lost connection|gone away|Can't connect)",
        ),
        ("Snapshot", r"Lost connection|gone away"),
    ],
)
def test_server_killed_during_backup(
    method: str, words: str, tmp_path: Path, victim: LocalServer
) -> None:
    writer = SetWriter(LocalStorage(tmp_path), "set")
    sink = ActingSink(writer, kill_server(victim), 1 << 20, name=FIRST_OBJECT[method])
    with pytest.raises(EngineError, match=words):
        run(victim.access(), PLANS[method], sink)
    assert sink.acted.is_set()
    assert no_tools_left()


@pytest.mark.parametrize(
    ("method", "tool"), [("Physical", "mariadb-backup"), ("Logical", "mariadb-dump")]
)
def test_killed_tool_fails_the_backup(
    method: str, tool: str, tmp_path: Path, victim: LocalServer
) -> None:
    """For Logical, one worker is killed: the others are stopped too."""
    writer = SetWriter(LocalStorage(tmp_path), "set")
    sink = ActingSink(writer, kill_tool(tool), 1 << 20, name=FIRST_OBJECT[method])
    with pytest.raises(EngineError, match=rf"^{tool} exited with -9"):
        run(victim.access(), PLANS[method], sink)
    assert sink.acted.is_set()
    assert no_tools_left()
    assert commits_go_through(victim.access())


@pytest.mark.parametrize("method", ["Physical", "Logical", "Snapshot"])
def test_failing_sink_fails_the_backup(method: str, tmp_path: Path, victim: LocalServer) -> None:
    writer = SetWriter(LocalStorage(tmp_path), "set")
    sink = ActingSink(writer, nothing, 1 << 20, name=FIRST_OBJECT[method], fail=True)
    with pytest.raises(StorageError, match="disk full while writing"):
        run(victim.access(), PLANS[method], sink)
    assert no_tools_left()
    assert commits_go_through(victim.access())
