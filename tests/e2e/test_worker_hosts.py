"""Celery workers on two "hosts": two network namespaces made here, each with its own
address (a veth pair to the root namespace), its own MariaDB listening only on that
address and its own ``rdsbackup worker --queue host-x``, run inside it with
``ip netns exec``. The API process (root namespace) reaches both servers over the veths;
the workers reach Redis and the SQLite catalog of the root namespace (a shared disk).
Neither namespace can reach the other's server, so a job routed to the wrong host could
not succeed.

It proves: CreateBackup (official SDK) of each instance runs on the worker of that
instance's host queue, inside that host's namespace, and finishes; a worker killed with
SIGKILL mid-backup (mariadb-backup running in its namespace) leaves its job Failed, with
a reason naming its lease owner, within the lease and one reaper pass; its mariadb-backup
does not outlive it and leaves no lock behind (DDL on that server proceeds); a backup
running meanwhile on the other host finishes; a replacement worker on the killed host
takes its next job."""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import os
import random
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql
import pytest
from sqlalchemy import select

from rdsbackup.catalog.models import BackupJob
from rdsbackup.engines.base import ServerAccess
from rdsbackup.engines.families import MARIADB
from rdsbackup.instances.sample_data import load_sample
from rdsbackup.instances.servers import LocalServer, free_port
from rdsbackup.instances.servers_os import server_env
from tests.fixtures.servers import ServerFactory
from tests.fixtures.service import FAST, RDSBACKUP, ServiceProcess, tea_client, wait_job

SLOW = {"compression_level": 19, "compression_threads": 1, "backup_parallel": 1}
LEASE_SECONDS = float(FAST["job_lease_seconds"])
REAPER_PASS = 10.0
BULK_ROWS = 10_000
"""About 6 MB of hash text in host-a: its full backup then takes some 8 s (not 3 s)."""
BACKUP_TOOLS = ("mariadb-backup", "mariabackup")


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")
    return done


def netns_inode(netns: str) -> int:
    return os.stat(f"/run/netns/{netns}").st_ino


def net_of(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def processes_in(netns: str, names: tuple[str, ...]) -> list[int]:
    """Live processes called one of ``names`` whose network namespace is ``netns``."""
    inode, found = netns_inode(netns), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if comm in names and state not in ("Z", "X") and net_of(int(entry.name)) == inode:
            found.append(int(entry.name))
    return found


def free_subnet() -> ipaddress.IPv4Network:
    """A random 10.x.y.0/24 no interface here has an address in (parallel runs differ)."""
    used = ip("-4", "-o", "addr", "show").stdout
    for _ in range(100):
        net = ipaddress.IPv4Network(f"10.{random.randrange(1, 255)}.{random.randrange(256)}.0/24")
        if f" {net.network_address.exploded.rsplit('.', 1)[0]}." not in used:
            return net
    raise AssertionError("no free 10.x.y.0/24")


def wait_for(what: Callable[[], bool], timeout: float, why: str | Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, why if isinstance(why, str) else why()
        time.sleep(0.1)


def stop_group(proc: subprocess.Popen[bytes], sig: signal.Signals = signal.SIGTERM) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@dataclass
class Host:
    """One "host": a network namespace, its address, and the MariaDB served there."""

    queue: str
    netns: str
    root_addr: str
    addr: str
    server: LocalServer
    mariadbd: subprocess.Popen[bytes] | None = None

    def access(self) -> ServerAccess:
        return dataclasses.replace(self.server.access(), host=self.addr)


def make_host(
    stack: contextlib.ExitStack,
    queue: str,
    suffix: str,
    net: ipaddress.IPv4Network,
    server_factory: ServerFactory,
) -> Host:
    netns, veth = f"rdsbk-{queue}-{suffix}", f"rb{queue[-1]}{suffix}"
    added = ip("netns", "add", netns, check=False)
    if added.returncode != 0:
        if "not permitted" in added.stderr.lower() or "permission" in added.stderr.lower():
            pytest.skip(f"ip netns add is not permitted here: {added.stderr.strip()}")
        raise AssertionError(f"ip netns add {netns} failed: {added.stderr.strip()}")
    stack.callback(ip, "netns", "del", netns, check=False)
    root_addr, addr = (str(a) for a in list(net.hosts())[:2])
    ip("link", "add", f"{veth}r", "type", "veth", "peer", "name", f"{veth}n")
    stack.callback(ip, "link", "del", f"{veth}r", check=False)  # gone with the netns too
    ip("link", "set", f"{veth}n", "netns", netns)
    ip("addr", "add", f"{root_addr}/{net.prefixlen}", "dev", f"{veth}r")
    ip("link", "set", f"{veth}r", "up")
    ip("-n", netns, "addr", "add", f"{addr}/{net.prefixlen}", "dev", f"{veth}n")
    ip("-n", netns, "link", "set", f"{veth}n", "up")
    ip("-n", netns, "link", "set", "lo", "up")

    server = server_factory("MariaDB")  # initialised by the project's code, not started
    host = Host(queue, netns, root_addr, addr, server)
    args = [a for a in server._server_args() if not a.startswith("--bind-address=")]
    args.append(f"--bind-address={addr}")
    if server.os_user:
        args.append(f"--user={server.os_user}")  # `ip netns exec` must run as root
    server._prepare_start()
    with server.log_file.open("ab") as log:
        host.mariadbd = subprocess.Popen(
            ["ip", "netns", "exec", netns, *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd=server.base_dir,
            env=server_env(),
            start_new_session=True,
        )
    stack.callback(stop_group, host.mariadbd)
    wait_ready(host)
    return host


def wait_ready(host: Host) -> None:
    assert host.mariadbd is not None
    deadline = time.monotonic() + 60
    while True:
        assert host.mariadbd.poll() is None, f"mariadbd exited: {host.server.log_tail()}"
        try:
            pymysql.connect(
                host=host.addr,
                port=host.server.port,
                user=host.server.admin_user,
                password=host.server.admin_password,
                connect_timeout=2,
            ).close()
            return
        except pymysql.err.OperationalError:
            assert time.monotonic() < deadline, f"mariadbd never answered: {host.server.log_tail()}"
            time.sleep(0.1)


def sql(host: Host, *statements: str) -> None:
    """Run ``statements`` on the host's server, from the root namespace (over its veth)."""
    access = host.access()
    with (
        pymysql.connect(
            host=access.host,
            port=access.port,
            user=access.user,
            password=access.password,
            autocommit=True,
        ) as conn,
        conn.cursor() as cur,
    ):
        for statement in statements:
            cur.execute(statement)


def add_bulk(host: Host, rows: int) -> None:
    """A table of hash text (about 240 bytes a row): slow to compress at zstd level 19."""
    sql(
        host,
        "CREATE TABLE shop.bulk (id INT PRIMARY KEY, payload TEXT) ENGINE=InnoDB",
        "INSERT INTO shop.bulk SELECT seq, CONCAT(MD5(seq), SHA2(seq, 512), SHA2(-seq, 256))"
        f" FROM shop.seq_1_to_{int(rows)}",
    )


@dataclass
class Network:
    hosts: dict[str, Host]
    redis_port: int


@pytest.fixture
def network(server_factory: ServerFactory, tmp_path: Path) -> Iterator[Network]:
    suffix = uuid.uuid4().hex[:6]
    net = free_subnet()
    a_net, b_net = (
        ipaddress.IPv4Network(f"{net.network_address + offset}/30") for offset in (0, 4)
    )
    with contextlib.ExitStack() as stack:
        hosts = {
            "host-a": make_host(stack, "host-a", suffix, a_net, server_factory),
            "host-b": make_host(stack, "host-b", suffix, b_net, server_factory),
        }
        port = free_port()
        binds = ["127.0.0.1", *(h.root_addr for h in hosts.values())]
        redis = subprocess.Popen(
            # explicit addresses: protected mode would still refuse the veth clients
            ["redis-server", "--port", str(port), "--bind", *binds, "--protected-mode", "no",
             "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        stack.callback(stop_group, redis, signal.SIGKILL)
        wait_for(
            lambda: (
                subprocess.run(
                    ["redis-cli", "-p", str(port), "ping"],
                    capture_output=True,
                    text=True,
                    check=False,
                ).stdout.strip()
                == "PONG"
            ),
            20,
            "redis-server did not start",
        )
        assert redis.poll() is None
        for host in hosts.values():
            load_sample(MARIADB.name, host.access(), rows=500, databases=("shop",))
        yield Network(hosts, port)


class NsWorkers:
    """``rdsbackup worker`` processes, each run inside a host's namespace."""

    def __init__(self, svc: ServiceProcess, network: Network) -> None:
        self.svc, self.network = svc, network
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, node_id: str, host: Host) -> subprocess.Popen[bytes]:
        log = open(self.svc.root / f"{node_id}.log", "ab")  # noqa: SIM115 - handed to the child
        env = {
            **self.svc.env(),
            "RDSBACKUP_NODE_ID": node_id,
            "PYTHONUNBUFFERED": "1",
            # the broker on the root side of this host's veth: what it can reach
            "RDSBACKUP_BROKER_URL": f"redis://{host.root_addr}:{self.network.redis_port}/0",
        }
        proc = subprocess.Popen(
            ["ip", "netns", "exec", host.netns, RDSBACKUP, "worker", "--queue", host.queue,
             "--concurrency", "1"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        self.procs[node_id] = proc
        inode = netns_inode(host.netns)  # `ip netns exec` execs the worker once inside
        wait_for(lambda: net_of(proc.pid) == inode, 10, f"{node_id} never entered {host.netns}")
        return proc

    def kill(self, node_id: str) -> None:
        os.killpg(self.procs[node_id].pid, signal.SIGKILL)
        self.procs[node_id].wait()

    def log(self, node_id: str) -> str:
        return (self.svc.root / f"{node_id}.log").read_text(errors="replace")[-3000:]

    def stop_all(self) -> None:
        for proc in self.procs.values():
            stop_group(proc)


def job_row(svc: ServiceProcess, job_id: str) -> tuple[str, str | None]:
    """(status, lease owner) of a backup job, from the shared catalog."""
    catalog = svc.catalog()
    try:
        with catalog.read() as s:
            row = s.execute(
                select(BackupJob.status, BackupJob.lease_owner).where(BackupJob.id == int(job_id))
            ).one()
            return str(row[0]), row[1]
    finally:
        catalog.dispose()


def register(svc: ServiceProcess, host: Host, account: str) -> str:
    password_file = svc.root / f"pw-{uuid.uuid4().hex}"
    password_file.write_text(host.server.admin_password)
    try:
        args = ["instance", "add", "--engine", host.server.engine, "--host", host.addr,
                "--port", str(host.server.port), "--user", host.server.admin_user,
                "--password-file", str(password_file), "--account", account,
                "--data-dir", str(host.server.data_dir), "--host-queue", host.queue]  # fmt: skip
        if host.server.os_user:
            args += ["--os-user", host.server.os_user]
        out = svc.cli_json(*args)
        assert out["DBInstanceStatus"] == "Running", out
        return str(out["DBInstanceId"])
    finally:
        password_file.unlink()


@pytest.mark.slow
def test_each_host_runs_its_own_jobs_and_a_killed_host_worker_fails_only_its_job(
    service_maker: Callable[..., ServiceProcess], network: Network
) -> None:
    from alibabacloud_rds20140815 import models

    a, b = network.hosts["host-a"], network.hosts["host-b"]
    # Each namespace reaches its own server, not the other's: routing is what makes it work.
    for here, there in ((a, b), (b, a)):
        assert ip("-n", here.netns, "route", "get", there.addr, check=False).returncode != 0

    svc = service_maker(
        dispatcher="celery", broker_url=f"redis://127.0.0.1:{network.redis_port}/0", **SLOW
    )
    key = svc.add_key("acct1")
    ids = {a.queue: register(svc, a, "acct1"), b.queue: register(svc, b, "acct1")}
    svc.start()
    client = tea_client(svc.endpoint, key)
    workers = NsWorkers(svc, network)

    def create(host: Host, kind: str = "Auto") -> str:
        request = models.CreateBackupRequest(
            dbinstance_id=ids[host.queue], backup_method="Physical", backup_type=kind
        )
        return str(client.create_backup(request).body.backup_job_id)

    def owner_of(job_id: str, node_id: str) -> str:
        """The lease owner once the job is claimed; it must be ``node_id``'s worker."""
        seen: list[str | None] = []

        def claimed() -> bool:
            seen[:] = [job_row(svc, job_id)[1]]
            return seen[0] is not None

        wait_for(claimed, 60, lambda: f"nobody claimed job {job_id}:\n{workers.log(node_id)}")
        owner = str(seen[0])
        node, pid, _ = owner.split(":")
        assert node == node_id, owner
        assert int(pid) == workers.procs[node_id].pid, owner
        return owner

    def finished(host: Host, job_id: str) -> dict[str, Any]:
        return wait_job(svc.endpoint, key, ids[host.queue], job_id, timeout=90)

    def sets(host: Host) -> list[str]:
        request = models.DescribeBackupsRequest(dbinstance_id=ids[host.queue])
        return [s.backup_status for s in client.describe_backups(request).body.items.backup]

    try:
        workers.start("node-a", a)
        workers.start("node-b", b)

        # 1. One backup per host, at once: each runs on its own host's worker.
        job_a, job_b = create(a), create(b)
        owner_of(job_a, "node-a")
        owner_of(job_b, "node-b")
        for host, job in ((a, job_a), (b, job_b)):
            done = finished(host, job)
            assert done["BackupStatus"] == "Finished", (done, svc.log_tail())
        assert sets(a) == ["Success"] and sets(b) == ["Success"]

        # 2. host-a's worker dies mid-backup while host-b backs up too.
        add_bulk(a, BULK_ROWS)
        slow_a = create(a, "FullBackup")
        owner_a = owner_of(slow_a, "node-a")
        slow_b = create(b)
        owner_of(slow_b, "node-b")
        wait_for(
            lambda: (
                job_row(svc, slow_a)[0] == "Uploading" and bool(processes_in(a.netns, BACKUP_TOOLS))
            ),
            30,
            "host-a's backup never reached its upload in host-a's namespace",
        )
        workers.kill("node-a")
        killed = time.monotonic()
        failed = finished(a, slow_a)
        assert failed["BackupStatus"] == "Failed", failed
        assert owner_a in failed["FailedReason"], failed
        assert time.monotonic() - killed < LEASE_SECONDS + REAPER_PASS
        wait_for(
            lambda: not processes_in(a.netns, BACKUP_TOOLS),
            15,
            "mariadb-backup outlived its killed worker",
        )
        done_b = finished(b, slow_b)
        assert done_b["BackupStatus"] == "Finished", done_b
        assert sets(b) == ["Success", "Success"]
        assert sets(a).count("Success") == 1

        # 3. The killed backup left host-a's server unlocked (DDL waits for no backup
        # stage lock), and a replacement worker there takes host-a's next job.
        sql(a, "SET SESSION lock_wait_timeout = 10", "DROP TABLE shop.bulk")
        workers.start("node-a2", a)
        again = create(a)
        owner_of(again, "node-a2")
        assert finished(a, again)["BackupStatus"] == "Finished"
        assert sets(a).count("Success") == 2
    finally:
        workers.stop_all()
        svc.stop()
