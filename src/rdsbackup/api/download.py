"""``GET``/``HEAD /download/<BackupId>[/<object>]``: the targets of signed download links.

The link is checked before anything else is looked at: a bad or expired signature is a
403 whether or not the set exists. One byte range (``bytes=a-b``, ``a-``, ``-n``) is
served as a 206; a request for several ranges gets the whole body (RFC 9110 lets a
server ignore ``Range``). Failures are Alibaba error bodies in JSON.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import parse_qs, quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from rdsbackup.api.errors import CATALOGUE, ErrorCode
from rdsbackup.api.params import parse_id
from rdsbackup.api.text import xml_safe
from rdsbackup.service.links import LinkRejected, LinkSigner, LinkTarget
from rdsbackup.service.payloads import Payload, PayloadNotFound, Payloads, SetNotServable

log = logging.getLogger(__name__)

_DIGITS = re.compile(r"[0-9]{1,20}")
_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")


class Unsatisfiable(Exception):
    pass


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The one range asked for, as ``[start, stop)``; ``None`` for the whole body (no
    ``Range``, or one that is ignored: malformed, not bytes, several ranges)."""
    if header is None:
        return None
    m = _RANGE.fullmatch(header.strip())
    if m is None or (not m[1] and not m[2]):
        return None
    if not m[1]:  # suffix: the last n bytes
        n = int(m[2])
        if n == 0 or size == 0:
            raise Unsatisfiable()
        return max(0, size - n), size
    start = int(m[1])
    if m[2] and int(m[2]) < start:
        return None
    if start >= size:
        raise Unsatisfiable()
    return start, (min(size, int(m[2]) + 1) if m[2] else size)


def parse_link(rest: str, query: str) -> tuple[LinkTarget, str]:
    """The target and signature a link names; raises LinkRejected when it names none."""
    id_part, slash, name = rest.partition("/")
    params = parse_qs(query, keep_blank_values=True)
    values = {k: params.get(k, []) for k in ("Expires", "Set", "Signature")}
    if any(len(v) != 1 for v in values.values()):
        raise LinkRejected("Expires, Set and Signature are each required once.")
    expires = values["Expires"][0]
    if not _DIGITS.fullmatch(id_part) or id_part != str(int(id_part)):
        raise LinkRejected("The backup id is not valid.")
    backup_id = int(id_part)
    if not _DIGITS.fullmatch(expires):
        raise LinkRejected("Expires is not valid.")
    target = LinkTarget(backup_id, values["Set"][0], name if slash else None, int(expires))
    return target, values["Signature"][0]


class DownloadEndpoint:
    def __init__(self, signer: LinkSigner, payloads: Payloads, host_id: str) -> None:
        self.signer = signer
        self.payloads = payloads
        self.host_id = host_id

    async def respond(self, request: Request) -> Response:
        request_id = str(uuid.uuid4()).upper()
        if request.method not in ("GET", "HEAD"):
            return self.error(ErrorCode.UnsupportedHTTPMethod, request_id)
        try:
            target, signature = parse_link(request.path_params["rest"], request.url.query)
            self.signer.verify(target, signature)
        except LinkRejected as e:
            return self.error(ErrorCode.ForbiddenDownloadLink, request_id, str(e))
        if parse_id(str(target.backup_id)) is None:  # signed, but no set can have it
            return self.error(ErrorCode.InvalidBackupSetIDNotFound, request_id)
        try:
            payload = await run_in_threadpool(
                self.payloads.payload, target.backup_id, target.set_tag, target.object_name
            )
        except PayloadNotFound:
            code = ErrorCode.InvalidBackupSetIDNotFound
            if target.object_name is not None:
                code = ErrorCode.InvalidBackupObjectNotFound
            return self.error(code, request_id)
        except SetNotServable:
            return self.error(ErrorCode.IncorrectBackupSetState, request_id)
        except Exception:
            log.exception("download %s failed", request_id)
            return self.error(ErrorCode.InternalError, request_id)
        return self.serve(request, payload, request_id)

    def serve(self, request: Request, payload: Payload, request_id: str) -> Response:
        headers = {
            "Accept-Ranges": "bytes",
            "Content-Type": payload.content_type,
            "Content-Disposition": _disposition(payload.filename),
            "Cache-Control": "no-store",
            "x-acs-request-id": request_id,
        }
        try:
            wanted = parse_range(request.headers.get("range"), payload.size)
        except Unsatisfiable:
            return self.error(
                ErrorCode.InvalidRange,
                request_id,
                headers={"Content-Range": f"bytes */{payload.size}"},
            )
        status, (start, stop) = (200, (0, payload.size)) if wanted is None else (206, wanted)
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{stop - 1}/{payload.size}"
        headers["Content-Length"] = str(stop - start)
        if request.method == "HEAD":
            return Response(b"", status, headers=headers)
        return StreamingResponse(_stream(payload.chunks(start, stop)), status, headers=headers)

    def error(
        self,
        code: ErrorCode,
        request_id: str,
        detail: str = "",
        headers: dict[str, str] | None = None,
    ) -> Response:
        spec = CATALOGUE[code]
        body = {
            "RequestId": request_id,
            "HostId": self.host_id,
            "Code": code,
            "Message": xml_safe(f"{spec.message} {detail}".strip()),
            "Recommend": "https://api.aliyun.com/troubleshoot?q="
            f"{quote(code)}&product=Rds&requestId={request_id}",
        }
        return Response(
            json.dumps(body).encode(),
            spec.status,
            media_type="application/json;charset=utf-8",
            headers={"x-acs-request-id": request_id, **(headers or {})},
        )


async def _stream(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Storage is read in worker threads; the reader is closed even when the client
    goes away mid-body."""
    try:
        while (chunk := await run_in_threadpool(next, chunks, None)) is not None:
            yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            await run_in_threadpool(close)


def _disposition(filename: str) -> str:
    plain = re.sub(r"[^A-Za-z0-9._-]", "_", filename)
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(filename, safe='')}"
