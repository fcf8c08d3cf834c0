"""Two API processes on one PostgreSQL catalog and one storage folder, set up as
docs/multinode.md says (one ``secret_key``): the 50-way CreateBackup race split across
them still gives exactly one job; the job's progress and its set are the same seen from
either node; a ClientToken retried on the other node gives back the same job; a request
replayed to the other node is refused as a reused nonce. Backups compress at zstd level
19 on one thread, so the job outlasts the race."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import httpx
import psycopg
import pytest
from cryptography.fernet import Fernet

from rdsbackup.instances.servers import LocalServer
from tests.fixtures.service import Key, ServiceProcess, now_stamp, signed_v1, wait_job

SLOW = {"compression_level": 19, "compression_threads": 1, "backup_parallel": 1}


@pytest.fixture
def catalog_url(postgres: LocalServer) -> Iterator[str]:
    """A database of its own on the fixture PostgreSQL server."""
    a = postgres.access()
    name = f"nodes_{uuid.uuid4().hex[:10]}"

    def admin(statement: str) -> None:
        with psycopg.connect(
            host=a.host,
            port=a.port,
            user=a.user,
            password=a.password,
            dbname="postgres",
            autocommit=True,
        ) as conn:
            conn.execute(statement.encode())

    admin(f'CREATE DATABASE "{name}"')
    user, password = quote_plus(a.user), quote_plus(a.password)
    yield f"postgresql+psycopg://{user}:{password}@{a.host}:{a.port}/{name}"
    admin(f'DROP DATABASE "{name}" WITH (FORCE)')


@dataclass
class Nodes:
    a: ServiceProcess
    b: ServiceProcess
    key: Key
    instance_id: str

    def call(self, node: ServiceProcess, action: str, **params: str) -> httpx.Response:
        return signed_v1(node.endpoint, self.key, action, params)


@pytest.fixture
def nodes(
    service_maker: Callable[..., ServiceProcess],
    catalog_url: str,
    mariadb: LocalServer,
    tmp_path: Path,
) -> Nodes:
    storage = tmp_path / "storage"
    shared = {
        "catalog_url": catalog_url,
        "secret_key": Fernet.generate_key().decode(),
        "storage_dir": str(storage),
        **SLOW,
    }
    a, b = service_maker(**shared), service_maker(**shared)
    key = a.add_key("acct1")  # through node a's CLI: in the shared catalog
    instance_id = a.register(mariadb, "acct1")
    a.start()
    b.start()
    return Nodes(a, b, key, instance_id)


def _without_links(backup: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in backup.items() if "URL" not in k and "Link" not in k}


def test_the_create_backup_race_across_two_nodes_gives_one_job(nodes: Nodes) -> None:
    barrier = threading.Barrier(50)
    answers: list[tuple[str, httpx.Response]] = []
    lock = threading.Lock()

    def one(n: int) -> None:
        node = nodes.a if n % 2 else nodes.b
        barrier.wait()
        resp = nodes.call(node, "CreateBackup", DBInstanceId=nodes.instance_id)
        with lock:
            answers.append((node.endpoint, resp))

    threads = [threading.Thread(target=one, args=(n,)) for n in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ok = [(where, r.json()["BackupJobId"]) for where, r in answers if r.status_code == 200]
    refused = [
        where
        for where, r in answers
        if r.status_code == 400 and r.json()["Code"] == "BackupJobExists"
    ]
    assert len(ok) == 1 and len(refused) == 49, [r.text for _, r in answers]
    assert {nodes.a.endpoint, nodes.b.endpoint} <= set(refused)  # both nodes refused some
    job_id = ok[0][1]

    seen = [
        nodes.call(node, "DescribeBackupTasks", DBInstanceId=nodes.instance_id).json()
        for node in (nodes.a, nodes.b)
    ]
    assert [[j["BackupJobId"] for j in s["Items"]["BackupJob"]] for s in seen] == [[job_id]] * 2
    other = nodes.b if ok[0][0] == nodes.a.endpoint else nodes.a
    done = wait_job(other.endpoint, nodes.key, nodes.instance_id, job_id)  # from the other
    assert done["BackupStatus"] == "Finished"
    sets = [
        nodes.call(node, "DescribeBackups", DBInstanceId=nodes.instance_id).json()
        for node in (nodes.a, nodes.b)
    ]
    # the same set from either node; download links are signed by the node asked
    listed = [[_without_links(b) for b in s["Items"]["Backup"]] for s in sets]
    assert listed[0] == listed[1], listed
    [backup] = sets[0]["Items"]["Backup"]
    assert backup["BackupStatus"] == "Success"

    # ClientToken: a retry on the other node is the same request, not a second job
    token = uuid.uuid4().hex
    first = nodes.call(nodes.a, "CreateBackup", DBInstanceId=nodes.instance_id, ClientToken=token)
    again = nodes.call(nodes.b, "CreateBackup", DBInstanceId=nodes.instance_id, ClientToken=token)
    assert first.status_code == again.status_code == 200, (first.text, again.text)
    assert first.json()["BackupJobId"] == again.json()["BackupJobId"]
    wait_job(nodes.a.endpoint, nodes.key, nodes.instance_id, first.json()["BackupJobId"])


def test_a_request_replayed_to_the_other_node_is_a_reused_nonce(nodes: Nodes) -> None:
    fixed = {"SignatureNonce": uuid.uuid4().hex, "Timestamp": now_stamp()}
    params = {"RegionId": "cn-hangzhou"}
    first = signed_v1(nodes.a.endpoint, nodes.key, "DescribeDBInstances", params, overrides=fixed)
    assert first.status_code == 200, first.text
    replay = signed_v1(nodes.b.endpoint, nodes.key, "DescribeDBInstances", params, overrides=fixed)
    assert replay.status_code == 400 and replay.json()["Code"] == "SignatureNonceUsed"
