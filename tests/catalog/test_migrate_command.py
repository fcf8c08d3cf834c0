"""`rdsbackup migrate` and ``auto_migrate = false``: the multi-node way to upgrade."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rdsbackup.app import build_core
from rdsbackup.catalog.db import HEAD_REVISION, Catalog
from rdsbackup.config import Settings


def rdsbackup(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RDSBACKUP_STATE_DIR": str(state)}
    cli = Path(sys.executable).with_name("rdsbackup")
    return subprocess.run([str(cli), *args], env=env, capture_output=True, text=True, check=False)


def test_a_node_without_auto_migrate_refuses_a_stale_catalog_until_migrate_ran(
    tmp_path: Path,
) -> None:
    settings = Settings(state_dir=tmp_path, auto_migrate=False)
    with pytest.raises(RuntimeError, match="rdsbackup migrate"):
        build_core(settings)
    assert Catalog(settings.resolved_catalog_url).revision() is None  # nothing was changed

    done = rdsbackup(tmp_path, "migrate")
    assert done.returncode == 0, done.stderr
    assert f"none -> {HEAD_REVISION}" in done.stdout
    core = build_core(settings)
    assert core.catalog.revision() == HEAD_REVISION
    core.catalog.dispose()

    again = rdsbackup(tmp_path, "migrate")
    assert f"{HEAD_REVISION} -> {HEAD_REVISION}" in again.stdout
