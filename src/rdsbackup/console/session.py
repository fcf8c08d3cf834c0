"""Who is signed in (an access key id in the signed session cookie, looked up on every
request so a disabled key ends its sessions) and the CSRF token of every form."""

from __future__ import annotations

import hmac
import secrets

from starlette.requests import Request

from rdsbackup.service.auth import KeyStore, Principal

KEY = "access_key_id"
CSRF = "csrf"
CSRF_FIELD = "csrf_token"


def sign_in(request: Request, keys: KeyStore, key_id: str, secret: str) -> Principal | None:
    """The key's principal when the pair is right and the key active; a new session
    (and CSRF token) on success, so a token seen before sign-in is worth nothing."""
    record = keys.lookup(key_id) if key_id else None
    if record is None or not (record.active and _same(record.secret, secret)):
        return None
    request.session.clear()
    request.session[KEY] = record.principal.access_key_id
    request.session[CSRF] = secrets.token_urlsafe(32)
    return record.principal


def sign_out(request: Request) -> None:
    request.session.clear()


def principal(request: Request, keys: KeyStore) -> Principal | None:
    key_id = request.session.get(KEY)
    if not isinstance(key_id, str):
        return None
    record = keys.lookup(key_id)
    if record is None or not record.active:
        request.session.clear()
        return None
    return record.principal


def csrf_token(request: Request) -> str:
    token = request.session.get(CSRF)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session[CSRF] = token
    return token


def csrf_ok(request: Request, sent: str | None) -> bool:
    token = request.session.get(CSRF)
    return isinstance(token, str) and sent is not None and _same(token, sent)


def _same(expected: str, given: str) -> bool:
    """Constant-time, for any text (``compare_digest`` refuses non-ASCII ``str``)."""
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogatepass"))
