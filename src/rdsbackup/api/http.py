"""The HTTP edge: any path, GET or POST (any other method: UnsupportedHTTPMethod),
parameters from query and form body. Parses, delegates, renders; every failure becomes
an Alibaba error body, never a traceback."""

from __future__ import annotations

import logging
import time
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
from rdsbackup.api.metrics import UNKNOWN_ACTION, ApiMetrics
from rdsbackup.api.protocol import Protocol, RawRequest
from rdsbackup.api.render import render
from rdsbackup.logs import log_context
from rdsbackup.service.errors import ServiceError

if TYPE_CHECKING:
    from rdsbackup.api.download import DownloadEndpoint
    from rdsbackup.api.metrics import MetricsEndpoint

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20


class RpcEndpoint:
    def __init__(
        self,
        protocol: Protocol,
        services: Services,
        actions: Mapping[str, Handler],
        host_id: str,
        metrics: ApiMetrics | None = None,
    ) -> None:
        self.protocol = protocol
        self.services = services
        self.actions = actions
        self.host_id = host_id
        self.metrics = metrics

    async def respond(self, request: Request) -> Response:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                started = time.monotonic()
                raw = _raw(request, b"")
                too_large = ApiError(
                    ErrorCode.InvalidParameter,
                    "The request body is larger than 1 MiB.",
                    param="body",
                )
                self._observe(raw, too_large.code, too_large.status, started)
                return self.error(raw, too_large)
        raw = _raw(request, bytes(body))
        return await run_in_threadpool(self.handle, raw)

    def handle(self, raw: RawRequest) -> Response:
        request_id = str(uuid.uuid4()).upper()
        started = time.monotonic()
        instance_id = _param(raw, "DBInstanceId")
        with log_context(RequestId=request_id, DBInstanceId=instance_id and instance_id[:64]):
            response, code = self._answer(raw, request_id)
            action = self._observe(raw, code, response.status_code, started)
            log.info(
                "%s %s %s in %.1f ms",
                action,
                code,
                response.status_code,
                (time.monotonic() - started) * 1000,
            )
        return response

    def _answer(self, raw: RawRequest, request_id: str) -> tuple[Response, str]:
        """The response and its Alibaba code (``Success`` or the error's Code)."""
        try:
            call = self.protocol.parse(raw)
            handler = self.actions[call.action]
            body: dict[str, Any] = {"RequestId": request_id, **handler(call, self.services)}
            content, ctype = render(body, call.format, f"{call.action}Response")
            ok = Response(content, 200, media_type=ctype, headers={"x-acs-request-id": request_id})
            return ok, "Success"
        except ApiError as e:
            return self.error(raw, e, request_id), e.code
        except ServiceError as e:
            api_error = from_domain(e)
            log.info("%s (%s)", api_error.code, e.detail)
            return self.error(raw, api_error, request_id), api_error.code
        except Exception:
            log.exception("request %s failed", request_id)
            internal = ApiError(ErrorCode.InternalError)
            return self.error(raw, internal, request_id), internal.code

    def _observe(self, raw: RawRequest, code: str, status: int, started: float) -> str:
        """Count the request; returns its action (one of the table's, else Unknown)."""
        action = raw.headers.get("x-acs-action") or _param(raw, "Action")
        known = action if action is not None and action in self.actions else UNKNOWN_ACTION
        if self.metrics is not None:
            self.metrics.observe(known, code, status, time.monotonic() - started)
        return known

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


def _param(raw: RawRequest, name: str) -> str | None:
    """A parameter from the query, else the form body (None if the body is not UTF-8)."""
    found = dict(raw.query).get(name)
    if found is None:
        try:
            found = dict(raw.form).get(name)
        except ApiError:
            return None
    return found


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


METRICS_PATH = "/metrics"


async def _console_home(request: Request) -> Response:
    return RedirectResponse("/console/instances", 303)


def asgi_app(
    endpoint: RpcEndpoint,
    download: DownloadEndpoint | None = None,
    metrics: MetricsEndpoint | None = None,
    console: ASGIApp | None = None,
) -> Starlette:
    """``metrics`` None (``metrics_enabled`` off): ``/metrics`` is an RPC path like any.
    ``console``: the web console, mounted under ``/console``."""
    downloads = _AnyMethod(download.respond) if download else None
    rpc = _AnyMethod(endpoint.respond)
    routes: list[BaseRoute] = []
    if console:
        routes += [Route("/console", _console_home), Mount("/console", console)]
    if downloads:
        routes.append(Route(DOWNLOAD_PREFIX + "{rest:path}", downloads))
    if metrics is not None:
        routes.append(Route(METRICS_PATH, _AnyMethod(metrics.respond)))
    app = Starlette(routes=[*routes, Route("/", rpc), Route("/{path:path}", rpc)])
    app.router.default = _Unrouted(rpc, downloads, app.router.default)
    return app
