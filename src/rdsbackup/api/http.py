"""The HTTP edge: any path, GET or POST (any other method: UnsupportedHTTPMethod),
parameters from query and form body. Parses, delegates, renders; every failure becomes
an Alibaba error body, never a traceback."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from rdsbackup.api.actions import Handler, Services
from rdsbackup.api.errors import ApiError, ErrorCode, from_domain
from rdsbackup.api.protocol import Protocol, RawRequest
from rdsbackup.api.render import render
from rdsbackup.service.errors import ServiceError

if TYPE_CHECKING:
    from rdsbackup.api.download import DownloadEndpoint

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20


class RpcEndpoint:
    def __init__(
        self, protocol: Protocol, services: Services, actions: Mapping[str, Handler], host_id: str
    ) -> None:
        self.protocol = protocol
        self.services = services
        self.actions = actions
        self.host_id = host_id

    async def respond(self, request: Request) -> Response:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return self.error(
                    _raw(request, b""),
                    ApiError(
                        ErrorCode.InvalidParameter,
                        "The request body is larger than 1 MiB.",
                        param="body",
                    ),
                )
        raw = _raw(request, bytes(body))
        return await run_in_threadpool(self.handle, raw)

    def handle(self, raw: RawRequest) -> Response:
        request_id = str(uuid.uuid4()).upper()
        try:
            call = self.protocol.parse(raw)
            handler = self.actions[call.action]
            body: dict[str, Any] = {"RequestId": request_id, **handler(call, self.services)}
            content, ctype = render(body, call.format, f"{call.action}Response")
            return Response(
                content, 200, media_type=ctype, headers={"x-acs-request-id": request_id}
            )
        except ApiError as e:
            return self.error(raw, e, request_id)
        except ServiceError as e:
            api_error = from_domain(e)
            log.info("%s: %s (%s)", request_id, api_error.code, e.detail)
            return self.error(raw, api_error, request_id)
        except Exception:
            log.exception("request %s failed", request_id)
            return self.error(raw, ApiError(ErrorCode.InternalError), request_id)

    def error(self, raw: RawRequest, e: ApiError, request_id: str | None = None) -> Response:
        request_id = request_id or str(uuid.uuid4()).upper()
        try:
            fmt = self.protocol.response_format(raw)
        except ApiError:
            fmt = "JSON"
        body = {
            "RequestId": request_id,
            "HostId": self.host_id,
            "Code": e.code,
            "Message": e.message,
            "Recommend": "https://api.aliyun.com/troubleshoot?q="
            f"{quote(e.code)}&product=Rds&requestId={request_id}",
        }
        content, ctype = render(body, fmt, "Error", error=True)
        return Response(
            content, e.status, media_type=ctype, headers={"x-acs-request-id": request_id}
        )


def _raw(request: Request, body: bytes) -> RawRequest:
    return RawRequest(
        method=request.method.upper(),
        path=request.url.path,
        query=parse_qsl(request.url.query, keep_blank_values=True),
        headers={k.lower(): v for k, v in request.headers.items()},
        body=body,
    )


class _AnyMethod:
    """An endpoint as a plain ASGI app: Starlette's ``Route`` then hands it every method
    (TRACE, PROPFIND, ...), so the endpoint answers UnsupportedHTTPMethod in an Alibaba
    body instead of the router's ``405 text/plain``."""

    def __init__(self, respond: Callable[[Request], Awaitable[Response]]) -> None:
        self.respond = respond

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.respond(Request(scope, receive))
        await response(scope, receive, send)


DOWNLOAD_PREFIX = "/download/"


class _Unrouted:
    """What no route matched: a path Starlette's patterns refuse (one holding a decoded
    CR or LF) would get the router's ``404 text/plain``; it goes to the endpoint its
    prefix names instead, which answers in an Alibaba body."""

    def __init__(self, rpc: _AnyMethod, download: _AnyMethod | None, other: ASGIApp) -> None:
        self.rpc = rpc
        self.download = download
        self.other = other

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.other(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if self.download is not None and path.startswith(DOWNLOAD_PREFIX):
            rest = path[len(DOWNLOAD_PREFIX) :]
            await self.download({**scope, "path_params": {"rest": rest}}, receive, send)
        else:
            await self.rpc(scope, receive, send)


async def _console_home(request: Request) -> Response:
    return RedirectResponse("/console/instances", 303)


def asgi_app(
    endpoint: RpcEndpoint,
    download: DownloadEndpoint | None = None,
    console: ASGIApp | None = None,
) -> Starlette:
    """``console``: the web console, mounted under ``/console``."""
    downloads = _AnyMethod(download.respond) if download else None
    rpc = _AnyMethod(endpoint.respond)
    routes: list[BaseRoute] = []
    if console:
        routes += [Route("/console", _console_home), Mount("/console", console)]
    if downloads:
        routes.append(Route(DOWNLOAD_PREFIX + "{rest:path}", downloads))
    app = Starlette(routes=[*routes, Route("/", rpc), Route("/{path:path}", rpc)])
    app.router.default = _Unrouted(rpc, downloads, app.router.default)
    return app
