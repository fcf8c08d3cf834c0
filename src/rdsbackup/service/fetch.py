"""``rdsbackup backup download``: fetch a set through its download link, over HTTP from the
running service, and verify it.

The archive is unpacked as it streams in, each member hashed on the way to disk. What
is checked: the archive holds exactly the set's ``manifest.json`` and objects, in that
order; the manifest's sha256 is the set's ``Checksum``; every object has the size and
sha256 the manifest gives it.

The link serves an encrypted set's objects encrypted. They are decrypted as they
stream in with the data key the manifest carries, unwrapped by the settings' key (the
checksums are those of the encrypted bytes, checked on the way); every chunk is
authenticated, so what lands on disk is what the backup wrote, or the fetch fails.
Asked to keep them encrypted, the objects are written as served.
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
from rdsbackup.storage.base import StorageError
from rdsbackup.storage.crypto import DecryptingReader
from rdsbackup.storage.keys import Keyring, KeyUnavailable, SetKey

CHUNK = 1 << 20


class FetchFailed(Exception):
    pass


@dataclass(frozen=True)
class Fetched:
    backup_id: int
    directory: Path
    files: list[str]
    bytes: int
    decrypted: bool = False


@dataclass
class _Received:
    size: int
    sha256: str


@dataclass
class _Check:
    checksum: str
    keyring: Keyring | None = None
    decrypt: bool = True
    manifest: Manifest | None = None
    key: SetKey | None = None
    problems: list[str] = field(default_factory=list)

    def manifest_received(self, data: bytes) -> None:
        if hashlib.sha256(data).hexdigest() != self.checksum:
            self.problems.append(f"{MANIFEST_NAME}: sha256 does not match the set's Checksum")
        try:
            self.manifest = Manifest.from_json(data)
        except (ValueError, TypeError, KeyError) as e:
            self.problems.append(f"{MANIFEST_NAME}: not a manifest ({e})")
            return
        if self.manifest.encryption and self.decrypt and not self.problems:
            if self.keyring is None:
                raise FetchFailed("the set is encrypted and no encryption keys are configured")
            try:
                self.key = self.keyring.set_key(self.manifest.encryption)
            except KeyUnavailable as e:
                raise FetchFailed(f"the set cannot be decrypted: {e}") from None

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
    keyring: Keyring | None = None,
    decrypt: bool = True,
) -> Fetched:
    """``decrypt``: write an encrypted set's objects decrypted (with ``keyring``)."""
    checksum, expected = _find(catalog, backup_id)
    url = links.url(links.target(backup_id, checksum), base_url)
    return fetch_url(
        url, checksum, out, backup_id, expected, timeout=timeout, keyring=keyring, decrypt=decrypt
    )


def fetch_url(
    url: str,
    checksum: str,
    out: Path,
    backup_id: int,
    expected: list[str] | None = None,
    *,
    timeout: float = 60,
    keyring: Keyring | None = None,
    decrypt: bool = True,
) -> Fetched:
    """Fetch the set behind a download link (a client's: ``BackupDownloadURL`` and
    ``Checksum`` of DescribeBackups). ``expected``: the members the archive must hold,
    in order; None: those its manifest, checked against ``checksum``, lists."""
    out.mkdir(parents=True, exist_ok=True)
    check = _Check(checksum, keyring, decrypt)
    try:
        with httpx.stream("GET", url, timeout=timeout) as response:
            if response.status_code != 200:
                response.read()
                raise FetchFailed(_refusal(response))
            total, expected = _unpack(response.iter_bytes(CHUNK), expected, out, check)
    except httpx.HTTPError as e:
        raise FetchFailed(f"downloading from {url.split('?')[0]} failed: {e}") from e
    except tarfile.TarError as e:
        raise FetchFailed(f"the archive is damaged: {e}") from e
    check.all_received(expected[1:])
    if check.problems:
        more = f" (and {len(check.problems) - 1} more)" if len(check.problems) > 1 else ""
        raise FetchFailed(f"{check.problems[0]}{more}")
    return Fetched(backup_id, out, expected, total, decrypted=check.key is not None)


def _find(catalog: Catalog, backup_id: int) -> tuple[str, list[str]]:
    """The set's checksum and the members its archive must hold, in order."""
    with catalog.read() as s:
        found = s.scalar(select(BackupSet).where(BackupSet.id == backup_id))
        if found is None:
            raise FetchFailed("no such backup set")
        if found.status != BackupStatus.SUCCESS or not found.is_avail:
            raise FetchFailed(f"the set is not available (BackupStatus={found.status})")
        return found.checksum, [MANIFEST_NAME, *(o.name for o in found.objects)]


def _unpack(
    chunks: Iterator[bytes], expected: list[str] | None, out: Path, check: _Check
) -> tuple[int, list[str]]:
    total, index = 0, -1
    names = expected or [MANIFEST_NAME]
    stream = chunk_stream(chunks, CHUNK)
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for index, member in enumerate(tar):
            if index >= len(names) or member.name != names[index] or not member.isreg():
                raise FetchFailed(f"unexpected member {member.name!r} in the archive")
            source = tar.extractfile(member)
            assert source is not None
            if index == 0:
                data = source.read()
                _destination(out, member.name).write_bytes(data)
                check.manifest_received(data)
                if expected is None:  # the manifest names the rest, once it is the set's
                    if check.problems or check.manifest is None:
                        raise FetchFailed(check.problems[0])
                    names = [MANIFEST_NAME, *(o.name for o in check.manifest.objects)]
                got = _Received(len(data), hashlib.sha256(data).hexdigest())
            else:
                got = _copy(source, _destination(out, member.name), check.key, member.name)
                check.object_received(member.name, got)
            total += got.size
        if index + 1 != len(names):
            raise FetchFailed(f"the archive ended before {names[index + 1]}")
    return total, names


class _Hashing:
    """What is read through it, hashed and counted (the stored bytes)."""

    def __init__(self, inner: IO[bytes]) -> None:
        self.inner = inner
        self.sha = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        chunk = self.inner.read(n)
        self.sha.update(chunk)
        self.size += len(chunk)
        return chunk

    def close(self) -> None:
        pass


def _copy(source: IO[bytes], dest: Path, key: SetKey | None, name: str) -> _Received:
    hashing = _Hashing(source)
    with open(dest, "wb") as f:
        if key is None:
            while chunk := hashing.read(CHUNK):
                f.write(chunk)
        else:
            try:
                plain = DecryptingReader(hashing, key.data_key, name)
                while chunk := plain.read_chunk():
                    f.write(chunk)
            except StorageError as e:
                raise FetchFailed(f"{name}: {e}") from None
    return _Received(hashing.size, hashing.sha.hexdigest())


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
