"""One HTTP request -> one authenticated :class:`Call`, or an :class:`ApiError`.

Checks run in the order a client can act on: the action and version, then the
signature's parts, the timestamp window, the key, the signature, the nonce, and last
whether the key may call the action. Flow control (``Throttling.User``) counts only
requests that proved their key, so nobody can spend another key's budget.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Container
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import parse_qsl

from rdsbackup.api import signature as sig
from rdsbackup.api.errors import ApiError, ErrorCode
from rdsbackup.ratelimit import Throttle
from rdsbackup.service.auth import KeyRecord, KeyStore, Principal
from rdsbackup.timeutil import utcnow

API_VERSION = "2014-08-15"
FORM = "application/x-www-form-urlencoded"
_V3_REQUIRED_SIGNED = (
    "host",
    "x-acs-action",
    "x-acs-version",
    "x-acs-date",
    "x-acs-signature-nonce",
    "x-acs-content-sha256",
)
_TIMESTAMP_FORMATS = ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class RawRequest:
    method: str
    path: str
    query: list[tuple[str, str]]
    """Decoded query pairs (``+`` and ``%XX`` already decoded)."""
    headers: dict[str, str]
    """Lower-case names."""
    body: bytes

    @property
    def form(self) -> list[tuple[str, str]]:
        ctype = self.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != FORM or not self.body:
            return []
        try:
            return parse_qsl(self.body.decode(), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            raise ApiError(
                ErrorCode.InvalidParameter, "The body is not UTF-8.", param="body"
            ) from None

    @property
    def is_v3(self) -> bool:
        return self.headers.get("authorization", "").startswith(sig.V3_ALGORITHM)


@dataclass(frozen=True)
class Call:
    action: str
    params: dict[str, str]
    principal: Principal
    format: str


class Protocol:
    def __init__(
        self,
        keys: KeyStore,
        actions: Container[str],
        *,
        window_seconds: int = 900,
        clock: Callable[[], datetime] = utcnow,
        throttle: Throttle | None = None,
    ) -> None:
        self.keys = keys
        self.throttle = throttle
        self.actions = actions
        self.window = timedelta(seconds=window_seconds)
        self.clock = clock

    def response_format(self, raw: RawRequest) -> str:
        """``Format`` (any case), else an Accept naming JSON or XML, else V3 JSON / V1 XML."""
        params = dict(raw.query)
        fmt = (params.get("Format") or dict(raw.form).get("Format") or "").upper()
        if fmt in ("JSON", "XML"):
            return fmt
        accept = raw.headers.get("accept", "").lower()
        if "json" in accept:
            return "JSON"
        if "xml" in accept:
            return "XML"
        return "JSON" if raw.is_v3 else "XML"

    def parse(self, raw: RawRequest) -> Call:
        if raw.method not in ("GET", "POST"):
            raise ApiError(ErrorCode.UnsupportedHTTPMethod)
        params = dict(raw.query)
        params.update(raw.form)
        fmt = self.response_format(raw)
        if raw.is_v3:
            principal = self._v3(raw, params)
            action = raw.headers["x-acs-action"]
        else:
            principal = self._v1(raw, params)
            action = params["Action"]
        if self.throttle is not None and not self.throttle.allow(principal.access_key_id):
            raise ApiError(ErrorCode.ThrottlingUser)
        if not principal.may_call(action):
            raise ApiError(ErrorCode.ForbiddenRAM)
        return Call(action, params, principal, fmt)

    def _check_action(
        self, action: str | None, version: str | None, names: tuple[str, str]
    ) -> None:
        if not action:
            raise ApiError(ErrorCode.MissingParameter, param=names[0])
        if not version:
            raise ApiError(ErrorCode.MissingParameter, param=names[1])
        if version != API_VERSION:
            raise ApiError(ErrorCode.InvalidVersion)
        if action not in self.actions:
            raise ApiError(ErrorCode.InvalidActionNotFound)

    def _v1(self, raw: RawRequest, params: dict[str, str]) -> Principal:
        self._check_action(params.get("Action"), params.get("Version"), ("Action", "Version"))
        for name in ("AccessKeyId", "Signature", "SignatureMethod", "SignatureNonce", "Timestamp"):
            if not params.get(name):
                raise ApiError(ErrorCode.MissingParameter, param=name)
        if params["SignatureMethod"] != "HMAC-SHA1":
            raise ApiError(
                ErrorCode.InvalidParameter, "Only HMAC-SHA1 is supported.", param="SignatureMethod"
            )
        if params.get("SignatureVersion", "1.0") != "1.0":
            raise ApiError(
                ErrorCode.InvalidParameter, "Only 1.0 is supported.", param="SignatureVersion"
            )
        stamp = self._check_time(params["Timestamp"])
        key = self._key(params["AccessKeyId"])
        signed = {k: v for k, v in params.items() if k != "Signature"}
        sts = sig.v1_string_to_sign(raw.method, signed)
        expected = sig.v1_signature(raw.method, signed, key.secret)
        if not sig.same(expected, params["Signature"]):
            raise ApiError(ErrorCode.SignatureDoesNotMatch, sts=sts)
        self._use_nonce(key, params["SignatureNonce"], stamp)
        return key.principal

    def _v3(self, raw: RawRequest, params: dict[str, str]) -> Principal:
        try:
            auth = sig.parse_v3_authorization(raw.headers["authorization"])
        except sig.MalformedAuthorization as e:
            raise ApiError(ErrorCode.IncompleteSignature, str(e)) from None
        headers = raw.headers
        self._check_action(
            headers.get("x-acs-action"),
            headers.get("x-acs-version"),
            ("x-acs-action", "x-acs-version"),
        )
        missing = [h for h in _V3_REQUIRED_SIGNED if h not in auth.signed_headers]
        if missing:
            raise ApiError(
                ErrorCode.IncompleteSignature, f"SignedHeaders must include {', '.join(missing)}."
            )
        for name in ("x-acs-date", "x-acs-signature-nonce"):
            if not headers.get(name):
                raise ApiError(ErrorCode.MissingParameter, param=name)
        stamp = self._check_time(headers["x-acs-date"])
        key = self._key(auth.access_key_id)
        payload = hashlib.sha256(raw.body).hexdigest()
        creq = sig.v3_canonical_request(
            raw.method, raw.path, raw.query, headers, auth.signed_headers, payload
        )
        sts = sig.v3_string_to_sign(creq)
        good = sig.same(sig.v3_signature(sts, key.secret), auth.signature)
        if not good or headers.get("x-acs-content-sha256") != payload:
            raise ApiError(ErrorCode.SignatureDoesNotMatch, sts=sts)
        self._use_nonce(key, headers["x-acs-signature-nonce"], stamp)
        return key.principal

    def _check_time(self, value: str) -> datetime:
        if not value.isascii():  # strptime takes any Unicode digit
            raise ApiError(ErrorCode.InvalidTimeStampFormat)
        for fmt in _TIMESTAMP_FORMATS:
            try:
                stamp = datetime.strptime(value, fmt)
                break
            except ValueError:
                continue
        else:
            raise ApiError(ErrorCode.InvalidTimeStampFormat)
        if abs(self.clock() - stamp) > self.window:
            raise ApiError(ErrorCode.InvalidTimeStampExpired)
        return stamp

    def _key(self, access_key_id: str) -> KeyRecord:
        key = self.keys.lookup(access_key_id)
        if key is None:
            raise ApiError(ErrorCode.InvalidAccessKeyIdNotFound)
        if not key.active:
            raise ApiError(ErrorCode.InvalidAccessKeyIdInactive)
        return key

    def _use_nonce(self, key: KeyRecord, nonce: str, stamp: datetime) -> None:
        if len(nonce) > 128:
            raise ApiError(
                ErrorCode.InvalidParameter, "At most 128 characters.", param="SignatureNonce"
            )
        # A nonce must stay refused for as long as its timestamp would be accepted.
        expires = max(stamp, self.clock()) + self.window
        if not self.keys.use_nonce(key.principal.access_key_id, nonce, expires):
            raise ApiError(ErrorCode.SignatureNonceUsed)
