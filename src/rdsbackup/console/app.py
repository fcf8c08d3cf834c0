"""The console as an ASGI app, mounted by the composition root under ``/console``."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from rdsbackup.api.actions import Services
from rdsbackup.console import summary
from rdsbackup.console.pages import PREFIX, Console
from rdsbackup.service.auth import KeyStore

HERE = Path(__file__).parent
COOKIE = "rdsbackup_console"
SESSION_SECONDS = 8 * 3600


def session_key(secret_key: bytes) -> str:
    """A key of its own for the session cookie, derived from the service's secret key
    (a cookie signature never doubles as a download link's)."""
    return hmac.new(secret_key, b"rdsbackup console session", hashlib.sha256).hexdigest()


def console_app(
    services: Services, keys: KeyStore, secret_key: bytes, *, https_only: bool
) -> Starlette:
    """``https_only``: the cookie is Secure (the service's public URL is https)."""
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.filters.update(age=summary.age, size=summary.size)
    templates.env.globals["prefix"] = PREFIX
    console = Console(services, keys, templates)
    instance = "/instances/{instance_id}"
    routes = [
        Route("/", console.home),
        Route("/login", console.login, methods=["GET", "POST"], name="login"),
        Route("/logout", console.logout, methods=["POST"]),
        Route("/instances", console.instances, name="instances"),
        Route(instance, console.instance, name="instance"),
        Route(instance + "/live", console.live),
        Route(instance + "/sets", console.sets),
        Route(instance + "/backup", console.create_backup, methods=["POST"]),
        Route(instance + "/policy", console.modify_policy, methods=["POST"]),
        *(
            Route(
                f"{instance}/backups/{{backup_id}}/{verb}", console.backup_action, methods=["POST"]
            )
            for verb in ("download", "verify", "clone", "restore-database", "delete")
        ),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    middleware = [
        Middleware(
            SessionMiddleware,
            secret_key=session_key(secret_key),
            session_cookie=COOKIE,
            max_age=SESSION_SECONDS,
            path=PREFIX,
            same_site="strict",
            https_only=https_only,
        )
    ]
    return Starlette(routes=routes, middleware=middleware)
