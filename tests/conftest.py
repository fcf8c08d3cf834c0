from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from rdsbackup.instances.home import OWNER_FILE, SYSTEM_HOME

pytest_plugins = [
    "tests.fixtures.servers",
    "tests.fixtures.service",
    "tests.fixtures.catalogs",
    "tests.fixtures.memory",
    "tests.fixtures.s3",
]


@pytest.fixture(scope="session", autouse=True)
def no_instances_homes_left(
    tmp_path_factory: pytest.TempPathFactory, server_root: Path
) -> Iterator[None]:
    """Services whose state folder is under pytest's 0700 temp folder (as root) keep their
    instances in SYSTEM_HOME/<hash>; the ones this session made go with it. With
    pytest-xdist only this worker's: those whose owner file names a state folder under
    this worker's temporary folders."""
    existed = SYSTEM_HOME.exists()
    before = set(SYSTEM_HOME.iterdir()) if existed else set()
    ours = (tmp_path_factory.getbasetemp().resolve(), server_root.resolve())
    yield
    if not SYSTEM_HOME.exists():
        return
    shared = "PYTEST_XDIST_WORKER" in os.environ
    for home in set(SYSTEM_HOME.iterdir()) - before:
        if shared:
            try:
                state_dir = Path((home / OWNER_FILE).read_text().strip())
            except OSError:
                continue  # another worker's, still being made
            if not any(state_dir.is_relative_to(root) for root in ours):
                continue
        shutil.rmtree(home, ignore_errors=True)
    if not existed and not any(SYSTEM_HOME.iterdir()):
        with contextlib.suppress(OSError):  # another worker may be using it
            SYSTEM_HOME.rmdir()
