"""Paths Starlette's route patterns refuse (a decoded CR or LF) still reach the
endpoints, so the answer is an Alibaba body, not the router's 404 text/plain."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET

import httpx
import pytest

from tests.fixtures.memory import MemoryRds


def get(memory_rds: MemoryRds, path: str, **params: str) -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=memory_rds.memory.service.asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://rds") as client:
            return await client.get(path, params=params)

    return asyncio.run(call())


@pytest.mark.parametrize("path", ["/a%0D%0Ab", "/%0A", "/x/%0D/y"])
def test_a_path_with_cr_or_lf_answers_in_the_envelope(memory_rds: MemoryRds, path: str) -> None:
    resp = get(memory_rds, path, Action="DescribeBackups", Format="JSON")
    assert resp.status_code == 400, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.json()["Code"] and resp.json()["RequestId"]


def test_a_download_path_with_cr_or_lf_answers_in_the_envelope(memory_rds: MemoryRds) -> None:
    resp = get(memory_rds, "/download/1%0D%0A/x")
    assert 400 <= resp.status_code < 500, resp.text
    root = ET.fromstring(resp.content) if "xml" in resp.headers["content-type"] else None
    body = resp.json() if root is None else {c.tag: c.text for c in root}
    assert body["Code"] and body["RequestId"]
