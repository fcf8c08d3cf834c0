"""Should a Logical backup of one large PostgreSQL database use ``pg_dump -Fd -j N``?

Measures, on a throw-away local server holding a pgbench database (``pgbench -i -s 35``,
about 500 MB; and the same split into 4 partitions, which gives ``-j`` tables to share):

* ``Fc | zstd``: what the engine does, ``pg_dump -Fc -Z0`` streamed through the
  engine's sink (zstd level 1, 2 threads) into local storage;
* ``Fc dump only``: the same dump into /dev/null (what pg_dump alone costs);
* ``Fd -jN dump only``: ``pg_dump -Fd -Z0 -j N`` into a folder (not even compressed or
  stored yet: a lower bound for any way of storing a directory-format dump);
* ``Fd -jN + zstd``: that folder's files then streamed through the same sink;

and, for the record, a Snapshot and a Physical set of the instance (wall time, how long
the server was in backup mode) and ``expected_bytes`` against the bytes written.

Run: ``.venv/bin/python bench/postgres_logical_choice.py [--scale 35] [--repeat 5]``.
Everything lives under a temporary folder in /tmp, removed at the end.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rdsbackup.engines.base import BackupMethod, BackupPlan, BackupStrategy, ServerAccess
from rdsbackup.engines.postgres.common import pg_binary, tool_env
from rdsbackup.engines.postgres.engine import PostgresEngine
from rdsbackup.engines.tools import ToolProcess
from rdsbackup.instances.servers import LocalServer, free_port, local_server
from rdsbackup.storage.local import LocalStorage
from rdsbackup.storage.streams import SetWriter

ENGINE = PostgresEngine()
Timed = Callable[[int], int]
"""One run (its number) -> raw bytes produced."""


def _run(args: list[str], env: dict[str, str], stdout: int | None = subprocess.DEVNULL) -> None:
    with ToolProcess(args, env=env, stdout=stdout) as tool:
        tool.check()


def make_server(root: Path, scale: int) -> LocalServer:
    server = local_server("PostgreSQL", root / "server", free_port(), "bench_admin", "bench-pw")
    server.initialize()
    server.start()
    access = server.access()
    for db, extra in (("bench", []), ("bench_part", ["--partitions=4"])):
        _run([pg_binary("createdb"), "--no-password", db], tool_env(access))
        started = time.monotonic()
        _run([pg_binary("pgbench"), "-i", "-q", f"-s{scale}", *extra], tool_env(access, db))
        print(
            f"pgbench -i -s {scale} {' '.join(extra)} into {db}: {time.monotonic() - started:.0f}s"
        )
    return server


def sink(root: Path, name: str) -> SetWriter:
    storage = root / "storage"
    shutil.rmtree(storage, ignore_errors=True)
    return SetWriter(LocalStorage(storage), name, level=1, threads=2)


def fc_zstd(access: ServerAccess, db: str, root: Path) -> Timed:
    def run(i: int) -> int:
        writer = sink(root, f"fc{i}")
        args = [pg_binary("pg_dump"), "--format=custom", "--compress=0", "--no-password"]
        with ToolProcess(args, env=tool_env(access, db)) as tool:
            writer.put("db.dump", tool.stdout)
            tool.check()
        return writer.raw_bytes

    return run


def fc_only(access: ServerAccess, db: str) -> Timed:
    def run(_: int) -> int:
        args = [pg_binary("pg_dump"), "--format=custom", "--compress=0", "--no-password"]
        _run(args, tool_env(access, db))
        return 0

    return run


def fd_dump(access: ServerAccess, db: str, root: Path, jobs: int, store: bool) -> Timed:
    def run(i: int) -> int:
        folder = root / f"fd{i}"
        shutil.rmtree(folder, ignore_errors=True)
        args = [pg_binary("pg_dump"), "--format=directory", "--compress=0", f"--jobs={jobs}"]
        _run([*args, "--no-password", f"--file={folder}"], tool_env(access, db))
        raw = 0
        if store:
            writer = sink(root, f"fd{i}")
            for path in sorted(folder.iterdir()):
                with path.open("rb") as f:
                    writer.put(f"db/{path.name}", f)
            raw = writer.raw_bytes
        shutil.rmtree(folder)
        return raw

    return run


def timed(variants: list[tuple[str, Timed]], repeat: int) -> list[dict[str, object]]:
    """Run the variants round-robin ``repeat`` times (so that a noisy neighbour slows
    them all alike); median wall time of each."""
    seconds: dict[str, list[float]] = {label: [] for label, _ in variants}
    raw: dict[str, int] = {}
    for i in range(repeat):
        for label, run in variants:
            started = time.monotonic()
            raw[label] = run(i)
            seconds[label].append(time.monotonic() - started)
    results: list[dict[str, object]] = []
    for label, runs in seconds.items():
        median = statistics.median(runs)
        print(f"  {label:<28} median {median:6.2f}s  runs {[round(s, 2) for s in runs]}")
        results.append(
            {"label": label, "median_s": round(median, 2), "runs_s": runs, "raw_bytes": raw[label]}
        )
    return results


def engine_set(access: ServerAccess, plan: BackupPlan, root: Path) -> dict[str, object]:
    expected = ENGINE.expected_bytes(access, plan)
    writer = sink(root, plan.method.value)
    started = time.monotonic()
    result = ENGINE.backup(access, plan, writer, lambda _: None)
    seconds = time.monotonic() - started
    raw = writer.raw_bytes
    figures: dict[str, object] = {
        "method": plan.method.value,
        "seconds": round(seconds, 2),
        "raw_bytes": raw,
        "expected_bytes": expected,
        "raw_over_expected": round(raw / expected, 3),
        "extra": result.extra,
    }
    print(f"  {plan.method.value:<9} {plan.databases or 'instance'}: {json.dumps(figures)}")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=int, default=35)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2)
    options = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="rdsbackup-bench-pg-"))
    root.chmod(0o711)
    server = make_server(root, options.scale)
    report: dict[str, object] = {"scale": options.scale, "jobs": options.jobs}
    try:
        access = server.access()
        for db in ("bench", "bench_part"):
            print(f"{db}:")
            jobs = options.jobs
            report[db] = timed(
                [
                    ("Fc | zstd (engine)", fc_zstd(access, db, root)),
                    ("Fc dump only", fc_only(access, db)),
                    (f"Fd -j{jobs} dump only", fd_dump(access, db, root, jobs, store=False)),
                    (f"Fd -j{jobs} + zstd", fd_dump(access, db, root, jobs, store=True)),
                ],
                options.repeat,
            )
        print("engine sets:")
        plans = [
            BackupPlan(BackupMethod.SNAPSHOT),
            BackupPlan(BackupMethod.PHYSICAL),
            BackupPlan(BackupMethod.LOGICAL, BackupStrategy.DB, databases=("bench",)),
        ]
        report["sets"] = [engine_set(access, plan, root) for plan in plans]
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
