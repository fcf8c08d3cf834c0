"""Backup sets in an S3-compatible bucket (AWS S3, Alibaba OSS, MinIO-likes, moto), by boto3.

A writer streams: it holds at most ``max_concurrency + 1`` parts in memory, uploads
them on a small thread pool as they fill, completes the multipart upload on a clean
exit and aborts it on any error, so an object is visible only once complete (S3 makes
an object visible at CompleteMultipartUpload, never before). An object smaller than one
part is one PutObject.

S3 allows 10,000 parts, and a stream's size is not known ahead. Parts therefore start
small and double every :data:`PARTS_PER_STEP` parts. With 5 MiB parts first (S3's
smallest), an object of up to 4.9 GiB is held in memory as at most
``max_concurrency + 1`` parts of 5 MiB, and 10,000 parts reach 4.9 TiB (S3's largest
object is 5 TiB). A full part is handed to the upload as it is, not copied. Servers
that want every part but the last of one size (Cloudflare R2) set
``s3_part_growth = false`` and a part size fit for their largest object.

Checksums: the service keeps its own sha256 per object (storage/streams.py), so the
client is told to send and check S3 checksums only when an operation requires them;
botocore >= 1.36 otherwise adds CRC32 trailers that many S3-compatible servers refuse.

Readers are seekable: a seek drops the current GetObject body and the next read asks for
``Range: bytes=<pos>-`` (signed download links serve byte ranges that way).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, BinaryIO, Literal

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from rdsbackup.storage.base import ObjectNotFound, ObjectWriter, Storage, StorageError

MiB = 1024 * 1024
MIN_PART = 5 * MiB
"""S3's smallest part (all but the last)."""
MAX_PART = 5 * 1024 * MiB
PARTS_PER_STEP = 1000
"""Parts of one size before the part size doubles."""


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str
    """Keys are stored under ``prefix`` (no leading or trailing ``/``; may be empty)."""

    @classmethod
    def parse(cls, url: str) -> S3Location:
        """``s3://bucket[/prefix]``."""
        if not url.startswith("s3://"):
            raise ValueError(f"storage_url must start with s3://: {url!r}")
        bucket, _, prefix = url[len("s3://") :].partition("/")
        if not bucket:
            raise ValueError(f"storage_url names no bucket: {url!r}")
        return cls(bucket, prefix.strip("/"))


def s3_client(
    endpoint_url: str | None,
    region: str,
    access_key_id: str | None,
    secret_access_key: str | None,
    addressing_style: Literal["virtual", "path"],
    max_pool: int,
) -> Any:
    config = Config(
        region_name=region,
        signature_version="s3v4",
        s3={"addressing_style": addressing_style},
        retries={"max_attempts": 5, "mode": "standard"},
        max_pool_connections=max_pool,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        config=config,
    )


class S3Storage(Storage):
    def __init__(
        self,
        client: Any,
        location: S3Location,
        part_size: int = 5 * MiB,
        max_concurrency: int = 2,
        parts_per_step: int | None = PARTS_PER_STEP,
    ) -> None:
        self.client = client
        self.bucket = location.bucket
        self.prefix = location.prefix
        self.part_size = max(MIN_PART, part_size)
        self.max_concurrency = max(1, max_concurrency)
        self.parts_per_step = parts_per_step
        """None: every part of ``part_size``."""

    def part_size_of(self, number: int) -> int:
        """The size of part ``number`` (from 1) of a multipart upload."""
        if self.parts_per_step is None:
            return self.part_size
        return min(MAX_PART, self.part_size << ((number - 1) // self.parts_per_step))

    def object_key(self, key: str) -> str:
        rel = PurePosixPath(key)
        if not key or rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise StorageError(f"invalid storage key: {key!r}")
        return f"{self.prefix}/{rel.as_posix()}" if self.prefix else rel.as_posix()

    def _folder(self, prefix: str) -> str:
        """The bucket prefix of a folder-like ``prefix`` (always ending in ``/``)."""
        return self.object_key(prefix.rstrip("/")) + "/"

    @contextmanager
    def writer(self, key: str) -> Iterator[ObjectWriter]:
        upload = _Upload(self, self.object_key(key))
        try:
            yield upload
            upload.complete()
        except BaseException:
            upload.abort()
            raise

    def reader(self, key: str) -> BinaryIO:
        name = self.object_key(key)
        size = self._head(name, key)
        return io.BufferedReader(_RangeReader(self.client, self.bucket, name, size), 1 * MiB)

    def size(self, key: str) -> int:
        return self._head(self.object_key(key), key)

    def _head(self, name: str, key: str) -> int:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=name)
        except ClientError as e:
            if _status(e) == 404:
                raise ObjectNotFound(key) from e
            raise StorageError(f"S3 HeadObject {key}: {_message(e)}") from e
        except BotoCoreError as e:
            raise StorageError(f"S3 HeadObject {key}: {e}") from e
        return int(head["ContentLength"])

    def list(self, prefix: str) -> Iterator[str]:
        folder = self._folder(prefix)
        strip = len(self.prefix) + 1 if self.prefix else 0
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=folder
            )
            keys = [obj["Key"][strip:] for page in pages for obj in page.get("Contents", [])]
        except (ClientError, BotoCoreError) as e:
            raise StorageError(f"S3 ListObjectsV2 {prefix}: {e}") from e
        yield from sorted(keys)

    def delete(self, key: str) -> None:
        try:  # S3 answers 204 for a missing key too
            self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key))
        except (ClientError, BotoCoreError) as e:
            raise StorageError(f"S3 DeleteObject {key}: {e}") from e

    def delete_prefix(self, prefix: str) -> int:
        keys = [self.object_key(k) for k in self.list(prefix)]
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            try:
                out = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )
            except (ClientError, BotoCoreError) as e:
                raise StorageError(f"S3 DeleteObjects {prefix}: {e}") from e
            if out.get("Errors"):
                first = out["Errors"][0]
                raise StorageError(f"S3 DeleteObjects {first.get('Key')}: {first.get('Message')}")
        return len(keys)


class _Upload:
    """One object being written: a PutObject if it stays under a part, else multipart."""

    def __init__(self, storage: S3Storage, name: str) -> None:
        self.s = storage
        self.name = name
        self.buffer = bytearray()
        """The part being filled; handed to the upload as it is (no copy) once full."""
        self.upload_id: str | None = None
        self.parts: list[Future[dict[str, Any]]] = []
        self.pool: ThreadPoolExecutor | None = None

    def write(self, data: bytes | memoryview, /) -> int:
        with memoryview(data) as whole:
            rest = whole.cast("B")
            while rest:
                size = self.s.part_size_of(len(self.parts) + 1)
                take = size - len(self.buffer)
                self.buffer += rest[:take]
                rest = rest[take:]
                if len(self.buffer) >= size:
                    part, self.buffer = self.buffer, bytearray()
                    self._send(part)
            return whole.nbytes

    def _send(self, part: bytearray) -> None:
        if self.upload_id is None:
            out = self._call(
                "CreateMultipartUpload",
                self.s.client.create_multipart_upload,
                Bucket=self.s.bucket,
                Key=self.name,
            )
            self.upload_id = str(out["UploadId"])
            self.pool = ThreadPoolExecutor(self.s.max_concurrency, thread_name_prefix="s3-part")
        assert self.pool is not None
        in_flight = [f for f in self.parts if not f.done()]
        if len(in_flight) >= self.s.max_concurrency:  # bounded memory: wait for the oldest
            in_flight[0].result()
        number = len(self.parts) + 1
        self.parts.append(self.pool.submit(self._upload_part, number, part))

    def _upload_part(self, number: int, part: bytearray) -> dict[str, Any]:
        out = self._call(
            "UploadPart",
            self.s.client.upload_part,
            Bucket=self.s.bucket,
            Key=self.name,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=part,
        )
        return {"PartNumber": number, "ETag": out["ETag"]}

    def complete(self) -> None:
        if self.upload_id is None:
            self._call(
                "PutObject",
                self.s.client.put_object,
                Bucket=self.s.bucket,
                Key=self.name,
                Body=self.buffer,
            )
            return
        if self.buffer or not self.parts:
            part, self.buffer = self.buffer, bytearray()
            self._send(part)
        done = [f.result() for f in self.parts]
        self._shutdown()
        self._call(
            "CompleteMultipartUpload",
            self.s.client.complete_multipart_upload,
            Bucket=self.s.bucket,
            Key=self.name,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": done},
        )

    def abort(self) -> None:
        self._shutdown()
        if self.upload_id is not None:
            # on failure, a bucket lifecycle rule for incomplete uploads is the backstop
            with contextlib.suppress(ClientError, BotoCoreError):
                self.s.client.abort_multipart_upload(
                    Bucket=self.s.bucket, Key=self.name, UploadId=self.upload_id
                )

    def _shutdown(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None

    def _call(self, what: str, fn: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            return dict(fn(**kwargs))
        except (ClientError, BotoCoreError) as e:
            raise StorageError(f"S3 {what} {self.name}: {e}") from e


class _RangeReader(io.RawIOBase):
    """An object read by GetObject, re-requested with a Range after a seek."""

    def __init__(self, client: Any, bucket: str, name: str, size: int) -> None:
        self.client, self.bucket, self.name, self.size = client, bucket, name, size
        self.pos = 0
        self.body: Any = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        target = max(0, base + offset)
        if target != self.pos:
            self._drop()
            self.pos = target
        return self.pos

    def readinto(self, b: Any) -> int:
        if self.pos >= self.size:
            return 0
        if self.body is None:
            try:
                out = self.client.get_object(
                    Bucket=self.bucket, Key=self.name, Range=f"bytes={self.pos}-"
                )
            except (ClientError, BotoCoreError) as e:
                raise StorageError(f"S3 GetObject {self.name}: {e}") from e
            self.body = out["Body"]
        data = self.body.read(len(b))
        if not data:
            raise StorageError(f"S3 object {self.name} ended at {self.pos} of {self.size} bytes")
        n = len(data)
        b[:n] = data
        self.pos += n
        return n

    def _drop(self) -> None:
        if self.body is not None:
            self.body.close()
            self.body = None

    def close(self) -> None:
        self._drop()
        super().close()


def _status(e: ClientError) -> int:
    return int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _message(e: ClientError) -> str:
    err = e.response.get("Error", {})
    return f"{err.get('Code', '')}: {err.get('Message', '')}"
