from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from rdsbackup.instances.home import SYSTEM_HOME

pytest_plugins = [
    "tests.fixtures.servers",
    "tests.fixtures.service",
    "tests.fixtures.catalogs",
    "tests.fixtures.memory",
    "tests.fixtures.s3",
]


@pytest.fixture(scope="session", autouse=True)
def no_instances_homes_left() -> Iterator[None]:
    """Services whose state folder is under pytest's 0700 temp folder (as root) keep their
    instances in SYSTEM_HOME/<hash>; the ones this session made go with it."""
    existed = SYSTEM_HOME.exists()
    before = set(SYSTEM_HOME.iterdir()) if existed else set()
    yield
    if not SYSTEM_HOME.exists():
        return
    for home in set(SYSTEM_HOME.iterdir()) - before:
        shutil.rmtree(home, ignore_errors=True)
    if not existed and not any(SYSTEM_HOME.iterdir()):
        SYSTEM_HOME.rmdir()
