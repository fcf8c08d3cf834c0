"""Copy-on-write clones: a clone keeps the content of its instant; no stage where the
file system cannot clone; the stage goes away with what is in it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from rdsbackup.engines.reflink import STAGE_PREFIX, CloneStage


def _data_dir(parent: Path) -> Path:
    data = parent / "data"
    (data / "db").mkdir(parents=True)
    (data / "ibdata1").write_bytes(os.urandom(1 << 20))
    (data / "db" / "t.ibd").write_bytes(b"a" * 70_000)
    os.chown(data / "db" / "t.ibd", 1234, 4321)
    (data / "db" / "t.ibd").chmod(0o640)
    return data


def _file_system(path: Path) -> str:
    return subprocess.run(
        ["stat", "--file-system", "--format=%T", str(path)], capture_output=True, text=True
    ).stdout.strip()


def test_a_clone_keeps_the_content_of_its_instant(reflink_root: Path, tmp_path: Path) -> None:
    parent = Path(os.path.join(reflink_root, tmp_path.name))
    parent.mkdir()
    data = _data_dir(parent)
    os.chown(data, 999, 998)
    stage = CloneStage.beside(data)
    assert stage is not None and stage.root.parent == parent
    assert stage.root.name.startswith(STAGE_PREFIX) and not list(stage.root.iterdir())
    with stage:
        st, size = stage.clone(data / "db" / "t.ibd", "db/t.ibd")
        assert (st.st_ino, size) == ((data / "db" / "t.ibd").stat().st_ino, 70_000)
        with open(data / "db" / "t.ibd", "r+b") as f:  # the source changes afterwards
            f.write(b"changed")
            f.truncate(10)
        clone = stage.path("db/t.ibd")
        assert clone.read_bytes() == b"a" * 70_000
        cloned = clone.stat()
        assert (cloned.st_uid, cloned.st_gid, cloned.st_mode & 0o777) == (1234, 4321, 0o640)
        folder = (stage.root / "db").stat()
        assert (folder.st_uid, folder.st_gid) == (999, 998)
        assert stage.bytes_cloned == 70_000
        stage.discard("db/t.ibd")
        assert not clone.exists()
    assert not stage.root.exists()
    assert [p.name for p in parent.iterdir()] == ["data"]


def test_no_stage_where_files_cannot_be_cloned(tmp_path: Path) -> None:
    if _file_system(tmp_path) not in ("ext2/ext3", "tmpfs"):
        pytest.skip(f"{tmp_path} is on {_file_system(tmp_path)}, which may clone")
    data = _data_dir(tmp_path)
    assert CloneStage.beside(data) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no stage left behind
    empty = tmp_path / "empty"
    empty.mkdir()
    assert CloneStage.beside(empty) is None


def test_a_stage_left_by_a_dead_process_goes_with_the_next_backup(
    reflink_root: Path, tmp_path: Path
) -> None:
    parent = Path(os.path.join(reflink_root, tmp_path.name))
    parent.mkdir()
    data = _data_dir(parent)
    dead = subprocess.Popen(["true"])
    dead.wait()
    orphan = parent / f"{STAGE_PREFIX}{dead.pid}-0123456789ab"
    live = parent / f"{STAGE_PREFIX}{os.getpid()}-ba9876543210"  # another backup, running
    for stage_root in (orphan, live):
        (stage_root / "db").mkdir(parents=True)
        (stage_root / "db" / "t.ibd").write_bytes(b"old blocks")
    stage = CloneStage.beside(data)
    assert stage is not None
    with stage:
        assert stage.root.name.startswith(f"{STAGE_PREFIX}{os.getpid()}-")
        assert not orphan.exists() and (live / "db" / "t.ibd").exists()
