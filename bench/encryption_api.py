"""Encryption at rest through the API: real 1 GiB backups of the bench's servers (the
datasets of ``bench/run.py``: pgbench / sysbench under ``bench/.data``), one service,
one instance per engine, turns of DisableBackupEncryption + CreateBackup and
EnableBackupEncryption + CreateBackup, each timed from CreateBackup until
DescribeBackupTasks says Finished (the figure: the set's start to end time in the
catalog, which polling does not round); the service process's CPU time (utime + stime from
/proc: the service's own threads, where compression, encryption and hashing run, not the
tools) per backup too.

Run: ``.venv/bin/python bench/encryption_api.py [--engines postgresql,mariadb]
[--method Physical] [--reps 3] [--size 1]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from datasets import DATA_ROOT, BenchServer, ensure_mariadb, ensure_postgres, remove
from rdsapi import RdsClient, ServiceProcess

from rdsbackup.catalog.db import Catalog
from rdsbackup.catalog.models import BackupSet
from rdsbackup.instances.servers import free_port

TICKS = os.sysconf("SC_CLK_TCK")


def service_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def job_seconds(catalog: Catalog, backup_id: int) -> float:
    with catalog.read() as s:
        found = s.get_one(BackupSet, backup_id)
        return (found.end_time - found.start_time).total_seconds()


def backup(
    client: RdsClient, pid: int, instance_id: str, method: str, catalog: Catalog
) -> dict[str, object]:
    cpu = service_cpu(pid)
    job_id = client.call(
        "CreateBackup", DBInstanceId=instance_id, BackupMethod=method, BackupType="FullBackup"
    )["BackupJobId"]
    while True:
        job = client.call("DescribeBackupTasks", DBInstanceId=instance_id, BackupJobId=job_id)[
            "Items"
        ]["BackupJob"][0]
        if job["BackupStatus"] in ("Finished", "Failed"):
            break
        time.sleep(0.2)
    cpu = service_cpu(pid) - cpu
    if job["BackupStatus"] != "Finished":
        raise RuntimeError(f"backup failed: {job}")
    item = client.call("DescribeBackups", DBInstanceId=instance_id, BackupId=job["BackupId"])[
        "Items"
    ]["Backup"][0]
    elapsed = job_seconds(catalog, int(job["BackupId"]))
    return {"seconds": elapsed, "cpu": cpu, "size": item["BackupSize"], "enc": item["Encryption"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", default="postgresql")
    parser.add_argument("--method", default="Physical")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--size", type=float, default=1.0)
    args = parser.parse_args()
    servers: dict[str, BenchServer] = {}
    for name in args.engines.split(","):
        if name == "postgresql":
            servers[name] = ensure_postgres(args.size, None)
        elif name == "mariadb":
            servers[name] = ensure_mariadb(args.size, 4, None, os.cpu_count() or 1)
    root = DATA_ROOT / "encryption-service"
    remove(root)
    service = ServiceProcess(
        root,
        free_port(),
        {"daily_backup_limit": 1000, "compression_threads": os.cpu_count() or 1},
    )
    key = service.add_key()
    instances = {name: service.register(s.server) for name, s in servers.items()}
    service.start()
    client = RdsClient(service.url, key, timeout=600)
    catalog = Catalog(f"sqlite:///{root / 'state' / 'catalog.db'}")
    try:
        for name, instance_id in instances.items():
            data = servers[name].data_bytes
            print(f"{name}: {data / (1 << 30):.2f} GiB ({servers[name].description}), "
                  f"{args.method}; cores: {os.cpu_count()}")  # fmt: skip
            runs: dict[str, list[dict[str, object]]] = {"off": [], "on": []}
            for rep in range(args.reps + 1):  # the first turn warms up, untimed
                for label in ("off", "on"):
                    switch = "Enable" if label == "on" else "Disable"
                    client.call(f"{switch}BackupEncryption", DBInstanceName=instance_id)
                    got = backup(client, service.pid, instance_id, args.method, catalog)
                    print(f"  {'warm-up' if rep == 0 else f'run {rep}'} {label:>3}: "
                          f"{got['seconds']:.2f}s, service cpu {got['cpu']:.2f}s, "
                          f"{got['size']:,} bytes stored, Encryption={got['enc']}")  # fmt: skip
                    if rep:
                        runs[label].append(got)
            for stat in (statistics.median, min):
                off = stat(float(str(r["seconds"])) for r in runs["off"])
                on = stat(float(str(r["seconds"])) for r in runs["on"])
                cpu_off = stat(float(str(r["cpu"])) for r in runs["off"])
                cpu_on = stat(float(str(r["cpu"])) for r in runs["on"])
                print(json.dumps({
                    "engine": name, "stat": stat.__name__, "wall_off": round(off, 2),
                    "wall_on": round(on, 2), "ratio": round(on / off, 3),
                    "cpu_off": round(cpu_off, 2), "cpu_on": round(cpu_on, 2),
                    "cpu_ratio": round(cpu_on / cpu_off, 3),
                }))  # fmt: skip
    finally:
        service.stop()
        for s in servers.values():
            s.server.stop()


if __name__ == "__main__":
    main()
