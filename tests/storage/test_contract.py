"""The storage contract, held by the local folder, the in-memory storage and an S3 bucket
(moto_server) alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from rdsbackup.storage.base import ObjectNotFound, Storage, StorageError
from rdsbackup.storage.local import LocalStorage
from rdsbackup.storage.memory import MemoryStorage
from rdsbackup.storage.s3 import MIN_PART, S3Location, S3Storage
from tests.fixtures.s3 import S3Server


@pytest.fixture(params=["local", "memory", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "s3":
        server: S3Server = request.getfixturevalue("s3_server")
        bucket = request.getfixturevalue("s3_bucket")
        return S3Storage(server.client(), S3Location(bucket, "sets"), part_size=MIN_PART)
    return LocalStorage(tmp_path / "s") if request.param == "local" else MemoryStorage()


def test_an_object_is_visible_only_once_its_writer_closed(storage: Storage) -> None:
    with storage.writer("i/1/a.zst") as w:
        w.write(b"half")
        assert list(storage.list("i/")) == []
        with pytest.raises(ObjectNotFound):
            storage.size("i/1/a.zst")
        w.write(memoryview(b" and the rest"))
    assert storage.read_bytes("i/1/a.zst") == b"half and the rest"
    assert storage.size("i/1/a.zst") == 17


def test_an_aborted_writer_leaves_nothing_and_keeps_the_old_object(storage: Storage) -> None:
    storage.write_bytes("i/1/a", b"old")
    with pytest.raises(RuntimeError), storage.writer("i/1/a") as w:
        w.write(b"new")
        raise RuntimeError("tool died")
    with pytest.raises(RuntimeError), storage.writer("i/1/b") as w:
        raise RuntimeError("tool died")
    assert list(storage.list("i/1/")) == ["i/1/a"]
    assert storage.read_bytes("i/1/a") == b"old"


def test_list_and_delete_work_on_folders_not_string_prefixes(storage: Storage) -> None:
    for key in ("i/1/a", "i/1/db/x", "i/10/a", "j/1/a"):
        storage.write_bytes(key, key.encode())
    assert list(storage.list("i/1/")) == ["i/1/a", "i/1/db/x"]
    assert list(storage.list("i/")) == ["i/1/a", "i/1/db/x", "i/10/a"]
    assert list(storage.list("nothing/")) == []
    assert storage.delete_prefix("i/1/") == 2
    assert storage.delete_prefix("i/1/") == 0
    assert list(storage.list("i/")) == ["i/10/a"]


def test_delete_removes_one_object_and_ignores_a_missing_one(storage: Storage) -> None:
    for key in ("i/logs/b.1", "i/logs/b.10"):
        storage.write_bytes(key, b"x")
    storage.delete("i/logs/b.1")
    storage.delete("i/logs/b.1")
    assert list(storage.list("i/logs/")) == ["i/logs/b.10"]
    with pytest.raises(StorageError):
        storage.delete("../escape")


def test_missing_objects_and_bad_keys(storage: Storage) -> None:
    with pytest.raises(ObjectNotFound):
        storage.reader("i/none")
    with pytest.raises(ObjectNotFound):
        storage.size("i/none")
    for key in ("../escape", "/abs/key", "i/../../x", ""):
        with pytest.raises(StorageError):
            storage.write_bytes(key, b"x")
