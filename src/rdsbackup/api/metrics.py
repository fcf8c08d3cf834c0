"""``GET /metrics``: the Prometheus exposition of the API's own counters (in-process,
per node) and of the catalog's backup state (:mod:`rdsbackup.service.metrics`).

Access: with ``metrics_token`` set, a request must carry ``Authorization: Bearer
<token>`` (none: 401, another: 403); without one, only loopback clients may scrape (403
otherwise), so a service listening on every address publishes nothing by default.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Container

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNKNOWN_ACTION = "Unknown"
"""The ``action`` label of requests naming no action the API has (the label's values
stay the action table's, whatever clients send)."""


class ApiMetrics:
    def __init__(self, registry: CollectorRegistry, actions: Container[str]) -> None:
        self.actions = actions
        self.requests = Counter(
            "rdsbackup_api_requests",
            "API requests by action, Alibaba result code (Success or the error Code) and "
            "HTTP status.",
            ("action", "code", "http_status"),
            registry=registry,
        )
        self.latency = Histogram(
            "rdsbackup_api_request_duration_seconds",
            "Time from a parsed request body to its rendered response, by action.",
            ("action",),
            registry=registry,
            buckets=LATENCY_BUCKETS,
        )

    def observe(self, action: str | None, code: str, status: int, seconds: float) -> None:
        name = action if action and action in self.actions else UNKNOWN_ACTION
        self.requests.labels(name, code, str(status)).inc()
        self.latency.labels(name).observe(seconds)


def metrics_registry(*collectors: Collector) -> CollectorRegistry:
    """A registry of its own (not the process-global one): one per service."""
    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector)
    return registry


class MetricsEndpoint:
    def __init__(self, registry: CollectorRegistry, token: str | None) -> None:
        self.registry = registry
        self.token = token

    async def respond(self, request: Request) -> Response:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        body = await run_in_threadpool(generate_latest, self.registry)  # reads the catalog
        return Response(body, 200, media_type=CONTENT_TYPE_LATEST)

    def _refusal(self, request: Request) -> Response | None:
        if request.method not in ("GET", "HEAD"):
            return PlainTextResponse("Method not allowed.\n", 405, headers={"allow": "GET"})
        if self.token is None:
            if _loopback(request.client.host if request.client else ""):
                return None
            return PlainTextResponse(
                "Metrics are served to loopback clients only: set metrics_token.\n", 403
            )
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            return PlainTextResponse(
                "A bearer token is required.\n", 401, headers={"www-authenticate": "Bearer"}
            )
        if not hmac.compare_digest(given.strip().encode(), self.token.encode()):
            return PlainTextResponse("The bearer token is not valid.\n", 403)
        return None


def _loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool((mapped or address).is_loopback)
