"""A client of the service's RDS API for the CLI: V1 (HMAC-SHA1) signed requests over
httpx, as any Alibaba client sends them, answering the raw JSON body so the
extension fields (BytesDone, FailedReason ...) that the official SDK's models drop
stay visible."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rdsbackup.api.signature import v1_signature
from rdsbackup.profiles import Profile

if TYPE_CHECKING:
    import httpx

API_VERSION = "2014-08-15"


class ApiFailure(Exception):
    """The service answered with an error: its code, HTTP status and message."""

    def __init__(self, code: str, status: int, message: str, request_id: str = "") -> None:
        super().__init__(f"{code} ({status}): {message}" if status else f"{code}: {message}")
        self.code = code
        self.status = status
        self.message = message
        self.request_id = request_id


class Unreachable(Exception):
    """No answer from the endpoint (refused, timed out, not the service)."""


class RdsClient:
    def __init__(
        self,
        profile: Profile,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        import httpx  # here: serve, which imports this module, never makes calls

        self.profile = profile
        self._http = httpx.Client(base_url=profile.url, timeout=timeout, transport=transport)
        self._http_error = httpx.HTTPError

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RdsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, action: str, params: Mapping[str, str | int | None] | None = None) -> Any:
        """POST ``action`` with ``params`` (None values left out); the response body."""
        signed = self._signed(
            action, {k: str(v) for k, v in (params or {}).items() if v is not None}
        )
        try:
            response = self._http.post("/", data=signed)
        except self._http_error as e:
            raise Unreachable(f"{self.profile.url}: {e}") from None
        try:
            body = response.json()
        except ValueError:
            raise Unreachable(
                f"{self.profile.url} answered HTTP {response.status_code} without JSON;"
                " is it the rdsbackup endpoint?"
            ) from None
        if response.status_code >= 400 or (isinstance(body, dict) and "Code" in body):
            raise ApiFailure(
                str(body.get("Code", "HTTP")),
                response.status_code,
                str(body.get("Message", response.reason_phrase)),
                str(body.get("RequestId", "")),
            )
        return body

    def _signed(self, action: str, params: dict[str, str]) -> dict[str, str]:
        common = {
            "Action": action,
            "Version": API_VERSION,
            "Format": "JSON",
            "AccessKeyId": self.profile.access_key_id,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureVersion": "1.0",
            "SignatureNonce": uuid.uuid4().hex,
            "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "RegionId": self.profile.region_id,
        }
        all_params = {**common, **params}
        all_params["Signature"] = v1_signature("POST", all_params, self.profile.access_key_secret)
        return all_params
