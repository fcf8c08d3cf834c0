"""Copy-on-write clones (reflinks) of a data directory's files, for Snapshot sets.

On a file system that shares blocks between files (XFS with ``reflink=1``, Btrfs,
bcachefs, OCFS2), the ``FICLONE`` ioctl makes a new file that shares every block of
another: it takes about a millisecond whatever the size, and from then on the clone
keeps the content the source had at that instant, however the source is written
afterwards. The kernel holds the source's I/O lock while it clones, so no write lands
halfway through, and cloning does not change the source's ``ctime``.

A Snapshot can then take its image under the server's lock by cloning, and read and
compress the clones once the lock is gone. :class:`CloneStage` is the folder the
clones go to. It must be on the data directory's file system (a clone cannot cross
file systems), so it is made beside the data directory, and removed with everything in
it when the backup ends, however it ends (a stage whose process died is removed by the
next backup of that data directory). :meth:`CloneStage.beside` answers ``None``
where clones cannot be made (another file system, no reflink support, a parent folder
the service cannot write), and the engine falls back to its streamed copy.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import shutil
from pathlib import Path
from types import TracebackType

from rdsbackup.processes import alive

FICLONE = 0x40049409
"""``_IOW(0x94, 9, int)`` from ``linux/fs.h``."""
STAGE_PREFIX = ".rdsbackup-clone-"
_UNSUPPORTED = {errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS}


class CloneStage:
    """A folder of clones owned like the data directory (so that tools running as its
    owner can read them); a context manager that removes it at exit."""

    def __init__(self, root: Path, uid: int, gid: int) -> None:
        self.root = root
        self.uid, self.gid = uid, gid
        self.bytes_cloned = 0

    @classmethod
    def beside(cls, data_dir: Path) -> CloneStage | None:
        """A new stage next to ``data_dir`` if a file of it can be cloned there, else None."""
        try:
            sample = _smallest_file(data_dir)
            owner = data_dir.stat()
        except OSError:
            return None  # not ours to read (a service that is not root): stream instead
        if sample is None:
            return None
        parent = data_dir.resolve().parent
        _remove_orphans(parent)
        root = parent / f"{STAGE_PREFIX}{os.getpid()}-{secrets.token_hex(6)}"
        try:
            root.mkdir(mode=0o700)
        except OSError:
            return None
        stage = cls(root, owner.st_uid, owner.st_gid)
        try:
            os.chown(root, owner.st_uid, owner.st_gid)
            stage.clone(sample, "probe")
        except OSError as e:
            stage.remove()
            if e.errno in _UNSUPPORTED or isinstance(e, PermissionError):
                return None
            raise
        (root / "probe").unlink()
        stage.bytes_cloned = 0
        return stage

    def clone(self, source: Path, name: str) -> tuple[os.stat_result, int]:
        """Clone ``source`` to ``name`` (relative, replacing any earlier clone of it).

        Returns the source's status and the clone's size (the source's at that instant)."""
        target = self.root / name
        self.make_dir(target.parent.relative_to(self.root).as_posix())
        src = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            st = os.fstat(src)
            dst = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                fcntl.ioctl(dst, FICLONE, src)
                size = os.fstat(dst).st_size
                os.fchown(dst, st.st_uid, st.st_gid)
                os.fchmod(dst, st.st_mode & 0o777)
                os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(dst)
        finally:
            os.close(src)
        self.bytes_cloned += size
        return st, size

    def make_dir(self, name: str, mode: int = 0o700) -> None:
        """The folder ``name`` (relative) and its missing parents, owned like the stage;
        ``mode`` for those made here."""
        path = self.root
        for part in Path(name).parts:
            path = path / part
            if not path.is_dir():
                path.mkdir()
                os.chown(path, self.uid, self.gid)
                path.chmod(mode)

    def discard(self, name: str) -> None:
        (self.root / name).unlink(missing_ok=True)

    def path(self, name: str) -> Path:
        return self.root / name

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> CloneStage:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()


def _remove_orphans(parent: Path) -> None:
    """Remove the stages a process that is gone left beside this data directory (a
    service killed in the middle of a Snapshot): they hold blocks the data directory
    no longer shares."""
    for path in parent.glob(f"{STAGE_PREFIX}*-*"):
        pid = path.name.removeprefix(STAGE_PREFIX).partition("-")[0]
        if pid.isdigit() and not alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _smallest_file(root: Path) -> Path | None:
    smallest: tuple[int, Path] | None = None
    for entry in os.scandir(root):
        if entry.is_file(follow_symlinks=False):
            size = entry.stat(follow_symlinks=False).st_size
            if smallest is None or size < smallest[0]:
                smallest = (size, Path(entry.path))
    return None if smallest is None else smallest[1]
