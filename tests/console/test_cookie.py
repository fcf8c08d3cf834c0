"""The session cookie is Secure when the service is reached over https."""

from __future__ import annotations

from pathlib import Path

from starlette.testclient import TestClient

from rdsbackup.config import Settings
from rdsbackup.instances.servers import free_port
from rdsbackup.testing import memory_service


def test_the_cookie_is_secure_httponly_and_strict_behind_https(tmp_path: Path) -> None:
    settings = Settings(
        state_dir=tmp_path, port=free_port(), public_url="https://backup.example.com"
    )
    memory = memory_service(settings)
    try:
        client = TestClient(memory.service.asgi, base_url="https://backup.example.com")
        answer = client.get("/console/login")
        cookie = answer.headers["set-cookie"].lower()
        assert answer.status_code == 200
        assert "rdsbackup_console=" in cookie and "path=/console" in cookie
        assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie
    finally:
        memory.service.core.catalog.dispose()
