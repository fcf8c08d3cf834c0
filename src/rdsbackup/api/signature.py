"""Alibaba Cloud request signatures: RPC HMAC-SHA1 (``SignatureVersion=1.0``) and V3
``ACS3-HMAC-SHA256``. Both sides of each: the same functions sign (tests, bench) and
verify (the server).

Parameters are always signed decoded-then-re-encoded (RFC 3986, ``' '`` -> ``%20``),
never as the raw query string: the Tea SDK writes spaces as ``+`` on the wire but
signs them as ``%20``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote

V3_ALGORITHM = "ACS3-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def percent_encode(value: str) -> str:
    return quote(value, safe="~", encoding="utf-8")


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    encoded = sorted((percent_encode(k), percent_encode(v)) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in encoded)


def v1_string_to_sign(method: str, params: Mapping[str, str]) -> str:
    """``params``: every decoded query and form parameter except ``Signature``."""
    canon = canonical_query(params.items())
    return f"{method.upper()}&{percent_encode('/')}&{percent_encode(canon)}"


def v1_signature(method: str, params: Mapping[str, str], secret: str) -> str:
    sts = v1_string_to_sign(method, params)
    digest = hmac.new((secret + "&").encode(), sts.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


@dataclass(frozen=True)
class V3Authorization:
    access_key_id: str
    signed_headers: tuple[str, ...]
    signature: str


class MalformedAuthorization(ValueError):
    pass


def parse_v3_authorization(header: str) -> V3Authorization:
    if not header.startswith(V3_ALGORITHM + " "):
        raise MalformedAuthorization("unsupported signature algorithm")
    fields: dict[str, str] = {}
    for part in header[len(V3_ALGORITHM) + 1 :].split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise MalformedAuthorization(f"malformed Authorization field {part.strip()!r}")
        fields[key] = value
    try:
        credential, signed, signature = (
            fields["Credential"],
            fields["SignedHeaders"],
            fields["Signature"],
        )
    except KeyError as e:
        raise MalformedAuthorization(f"Authorization lacks {e.args[0]}") from e
    headers = tuple(h.strip().lower() for h in signed.split(";") if h.strip())
    if not credential or not signature or not headers:
        raise MalformedAuthorization("Authorization has an empty field")
    return V3Authorization(credential, headers, signature)


def v3_canonical_request(
    method: str,
    path: str,
    query: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    signed_headers: Iterable[str],
    payload_sha256: str,
) -> str:
    """``headers``: lower-case names to values (a missing signed header signs as empty)."""
    names = list(signed_headers)
    canon_headers = "".join(f"{h}:{headers.get(h, '').strip()}\n" for h in names)
    return "\n".join(
        [
            method.upper(),
            path or "/",
            canonical_query(query),
            canon_headers,
            ";".join(names),
            payload_sha256,
        ]
    )


def v3_string_to_sign(canonical_request: str) -> str:
    return f"{V3_ALGORITHM}\n{hashlib.sha256(canonical_request.encode()).hexdigest()}"


def v3_signature(string_to_sign: str, secret: str) -> str:
    return hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
