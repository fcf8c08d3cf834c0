"""A 1 GiB physical backup through the service, into an S3 bucket against a local folder:
the job's time (CreateBackup to the DescribeBackupTasks poll that sees Finished) and the
service process's peak RSS (``VmHWM`` of a service started for that one backup; the
tools it runs, mariadb-backup and zstd, are processes of their own and not counted).

The S3 server is ``moto_server`` on the same machine (bench/s3.py's): it holds the
objects in its own memory and takes CPU from the same cores, so the S3 time is an upper
bound for a real endpoint elsewhere. The source is a fresh MariaDB filled with
``--gib`` of rows (``bench/.data/s3_service/``, made once and reused). Runs alternate
local and S3.

Run: ``.venv/bin/python bench/s3_service.py [--gib 1] [--repeat 2]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pymysql
from rdsapi import RdsClient, ServiceProcess

from rdsbackup.instances.servers import LocalServer, free_port, local_server
from rdsbackup.testing import moto_server

DATA = Path(__file__).resolve().parent / ".data" / "s3_service"
PASSWORD = "bench-s3-service"
ROWS_PER_BATCH = 200_000


def source(gib: float) -> LocalServer:
    """The bench MariaDB with about ``gib`` of InnoDB data (kept between runs)."""
    base = DATA / "mariadb"
    fresh = not (base / "data").exists()
    server = local_server("MariaDB", base, free_port(), "bench_admin", PASSWORD)
    if fresh:
        server.initialize()
    server.start()
    try:
        fill(server, gib)
    except BaseException:
        server.stop()
        raise
    return server


def fill(server: LocalServer, gib: float) -> None:
    conn = pymysql.connect(
        host="127.0.0.1", port=server.port, user="bench_admin", password=PASSWORD, autocommit=True
    )
    with conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS b")
        cur.execute(
            "CREATE TABLE IF NOT EXISTS b.t (id BIGINT PRIMARY KEY AUTO_INCREMENT,"
            " a CHAR(128), c CHAR(128), n INT) ENGINE=InnoDB"
        )
        cur.execute(
            "SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables"
            " WHERE table_schema = 'b'"
        )
        row = cur.fetchone()
        size = int(row[0]) if row else 0
        while size < gib * (1 << 30):
            cur.execute(  # hex of hashes: compresses about 2:1, like real rows
                f"INSERT INTO b.t (a, c, n) SELECT SHA2(RAND(), 512), SHA2(seq, 512), seq"
                f" FROM b.seq_1_to_{ROWS_PER_BATCH}"
            )
            cur.execute("ANALYZE TABLE b.t")
            cur.execute(
                "SELECT SUM(data_length + index_length) FROM information_schema.tables"
                " WHERE table_schema = 'b'"
            )
            row = cur.fetchone()
            size = int(row[0]) if row else 0
        print(f"source: {size / 2**30:.2f} GiB in b.t", flush=True)


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def one_backup(server: LocalServer, settings: dict[str, Any], run: int) -> tuple[float, float, int]:
    """(seconds, peak RSS MiB, stored bytes) of one Physical backup by a fresh service."""
    root = DATA / f"svc-{run}"
    shutil.rmtree(root, ignore_errors=True)
    svc = ServiceProcess(root, free_port(), {"scheduler_enabled": False, **settings})
    key = svc.add_key()
    instance = svc.register(server)
    svc.start()
    try:
        client = RdsClient(svc.url, key)
        t0 = time.monotonic()
        job = client.full_backup(instance)
        seconds = time.monotonic() - t0
        rss = peak_rss_mib(svc.pid)
        found = client.call("DescribeBackups", DBInstanceId=instance, BackupId=job["BackupId"])
        stored = int(found["Items"]["Backup"][0]["BackupSize"])
        return seconds, rss, stored
    finally:
        svc.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--part-mb", type=int, default=None, help="s3_part_size_mb")
    parser.add_argument("--concurrency", type=int, default=None, help="s3_max_concurrency")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="a service setting for both runs, e.g. compression_threads=1",
    )
    args = parser.parse_args()
    common: dict[str, Any] = {}
    for item in args.set:
        name, _, value = item.partition("=")
        common[name] = json.loads(value)
    server = source(args.gib)
    moto = ExitStack()
    try:
        endpoint = moto.enter_context(moto_server())
        import boto3

        boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="k",
            aws_secret_access_key="s",
        ).create_bucket(Bucket="bench")
        s3 = {
            "storage_url": "s3://bench/sets",
            "s3_endpoint_url": endpoint,
            "s3_access_key_id": "k",
            "s3_secret_access_key": "s",
            "s3_addressing_style": "path",
        }
        if args.part_mb is not None:
            s3["s3_part_size_mb"] = args.part_mb
        if args.concurrency is not None:
            s3["s3_max_concurrency"] = args.concurrency
        results: dict[str, list[tuple[float, float, int]]] = {"local": [], "s3": []}
        run = 0
        for rep in range(args.repeat):
            order = ["local", "s3"] if rep % 2 == 0 else ["s3", "local"]
            for label in order:
                run += 1
                got = one_backup(server, {**common, **(s3 if label == "s3" else {})}, run)
                results[label].append(got)
                print(
                    f"run {run} {label:>5}: {got[0]:.2f} s, service peak RSS {got[1]:.0f} MiB,"
                    f" stored {got[2] / 2**20:.0f} MiB",
                    flush=True,
                )
        local = statistics.median(r[0] for r in results["local"])
        remote = statistics.median(r[0] for r in results["s3"])
        print(
            f"median of {args.repeat}: local {local:.2f} s, S3 {remote:.2f} s,"
            f" ratio {remote / local:.2f}; peak RSS local"
            f" {max(r[1] for r in results['local']):.0f} MiB,"
            f" S3 {max(r[1] for r in results['s3']):.0f} MiB"
        )
    finally:
        moto.close()
        server.stop()


if __name__ == "__main__":
    main()
