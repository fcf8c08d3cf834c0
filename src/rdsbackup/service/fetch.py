"""``rdsbackup backup download``: fetch a set through its download link, over HTTP from the
running service, and verify it.

The archive is unpacked as it streams in, each member hashed on the way to disk. What
is checked: the archive holds exactly the set's ``manifest.json`` and objects, in that
order; the manifest's sha256 is the set's ``Checksum``; every object has the size and
sha256 the manifest gives it.
"""

from __future__ import annotations

import hashlib
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

import httpx
from sqlalchemy import select

from rdsbackup.catalog.db import Catalog
from rdsbackup.catalog.models import BackupSet
from rdsbackup.chunks import chunk_stream
from rdsbackup.manifest import MANIFEST_NAME, Manifest
from rdsbackup.service.links import LinkMaker
from rdsbackup.states import BackupStatus

CHUNK = 1 << 20


class FetchFailed(Exception):
    pass


@dataclass(frozen=True)
class Fetched:
    backup_id: int
    directory: Path
    files: list[str]
    bytes: int


@dataclass
class _Received:
    size: int
    sha256: str


@dataclass
class _Check:
    checksum: str
    manifest: Manifest | None = None
    problems: list[str] = field(default_factory=list)

    def manifest_received(self, data: bytes) -> None:
        if hashlib.sha256(data).hexdigest() != self.checksum:
            self.problems.append(f"{MANIFEST_NAME}: sha256 does not match the set's Checksum")
        try:
            self.manifest = Manifest.from_json(data)
        except (ValueError, TypeError, KeyError) as e:
            self.problems.append(f"{MANIFEST_NAME}: not a manifest ({e})")

    def object_received(self, name: str, got: _Received) -> None:
        if self.manifest is None:
            return
        try:
            want = self.manifest.object(name)
        except KeyError:
            self.problems.append(f"{name}: not listed in the manifest")
            return
        if got.size != want.size:
            self.problems.append(f"{name}: {got.size} bytes, the manifest says {want.size}")
        elif got.sha256 != want.sha256:
            self.problems.append(f"{name}: sha256 does not match the manifest")

    def all_received(self, names: list[str]) -> None:
        if self.manifest is not None:
            missing = [o.name for o in self.manifest.objects if o.name not in names]
            self.problems += [f"{name}: in the manifest but not in the set" for name in missing]


def fetch_set(
    catalog: Catalog,
    links: LinkMaker,
    backup_id: int,
    out: Path,
    *,
    base_url: str | None = None,
    timeout: float = 60,
) -> Fetched:
    checksum, expected = _find(catalog, backup_id)
    url = links.url(links.target(backup_id, checksum), base_url)
    out.mkdir(parents=True, exist_ok=True)
    check = _Check(checksum)
    try:
        with httpx.stream("GET", url, timeout=timeout) as response:
            if response.status_code != 200:
                response.read()
                raise FetchFailed(_refusal(response))
            total = _unpack(response.iter_bytes(CHUNK), expected, out, check)
    except httpx.HTTPError as e:
        raise FetchFailed(f"downloading from {url.split('?')[0]} failed: {e}") from e
    except tarfile.TarError as e:
        raise FetchFailed(f"the archive is damaged: {e}") from e
    check.all_received(expected[1:])
    if check.problems:
        more = f" (and {len(check.problems) - 1} more)" if len(check.problems) > 1 else ""
        raise FetchFailed(f"{check.problems[0]}{more}")
    return Fetched(backup_id, out, expected, total)


def _find(catalog: Catalog, backup_id: int) -> tuple[str, list[str]]:
    """The set's checksum and the members its archive must hold, in order."""
    with catalog.read() as s:
        found = s.scalar(select(BackupSet).where(BackupSet.id == backup_id))
        if found is None:
            raise FetchFailed("no such backup set")
        if found.status != BackupStatus.SUCCESS or not found.is_avail:
            raise FetchFailed(f"the set is not available (BackupStatus={found.status})")
        return found.checksum, [MANIFEST_NAME, *(o.name for o in found.objects)]


def _unpack(chunks: Iterator[bytes], expected: list[str], out: Path, check: _Check) -> int:
    total, index = 0, -1
    stream = chunk_stream(chunks, CHUNK)
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for index, member in enumerate(tar):
            if index >= len(expected) or member.name != expected[index] or not member.isreg():
                raise FetchFailed(f"unexpected member {member.name!r} in the archive")
            source = tar.extractfile(member)
            assert source is not None
            if index == 0:
                data = source.read()
                _destination(out, member.name).write_bytes(data)
                check.manifest_received(data)
                got = _Received(len(data), hashlib.sha256(data).hexdigest())
            else:
                got = _copy(source, _destination(out, member.name))
                check.object_received(member.name, got)
            total += got.size
        if index + 1 != len(expected):
            raise FetchFailed(f"the archive ended before {expected[index + 1]}")
    return total


def _copy(source: IO[bytes], dest: Path) -> _Received:
    sha, size = hashlib.sha256(), 0
    with open(dest, "wb") as f:
        while chunk := source.read(CHUNK):
            sha.update(chunk)
            size += len(chunk)
            f.write(chunk)
    return _Received(size, sha.hexdigest())


def _destination(out: Path, name: str) -> Path:
    rel = PurePosixPath(name)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise FetchFailed(f"refusing to write {name!r} outside {out}")
    path = out.joinpath(*rel.parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _refusal(response: httpx.Response) -> str:
    try:
        body = response.json()
        return f"the service refused the download: {body['Code']}: {body['Message']}"
    except (ValueError, KeyError, TypeError):
        return f"the service answered HTTP {response.status_code}"
