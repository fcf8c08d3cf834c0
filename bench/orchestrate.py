"""The bench's driver (``bench/run.py`` is the entry point): start the servers and the
service, run each path's variants in turns, print and record the figures."""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backup_paths import MARIADB, POSTGRES, all_paths
from datasets import (
    DATA_ROOT,
    BenchServer,
    ensure_mariadb,
    ensure_postgres,
    remove,
    warm_page_cache,
)
from harness import Bench, Options, PathResult, run_path
from rdsapi import RdsClient, ServiceProcess
from report import markdown_table, observations, text_table, to_json

from rdsbackup.instances.servers import free_port

BENCH_DIR = Path(__file__).resolve().parent

DESCRIPTION = """\
rdsbackup benchmark: the service's backups against the raw tool pipelines, same run,
same machine, same compression; prints API/raw ratios (make bench).

Everything lives in bench/.data (git-ignored): the bench's own MariaDB and PostgreSQL
servers with ~1 GiB each (made once, reused), the service's state, scratch output,
logs, and each run's results (results/<time>.json and .md)."""

ENGINES = {"mariadb": MARIADB, "postgresql": POSTGRES, "postgres": POSTGRES}


def say(message: str) -> None:
    print(message, flush=True)


def parse_args(argv: list[str] | None = None) -> Options:
    cores = os.cpu_count() or 1
    keys = [p.key for p in all_paths(1, cores, cores)]
    p = argparse.ArgumentParser(
        prog="bench/run.py",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="paths: " + ", ".join(keys),
    )
    p.add_argument(
        "--engines",
        default="mariadb,postgresql",
        help="comma-separated: mariadb, postgresql (default: both)",
    )
    p.add_argument(
        "--only",
        default="",
        help="comma-separated path keys (default: all); see the list below",
    )
    p.add_argument("--size", type=float, default=1.0, help="GiB of data per engine (default 1)")
    p.add_argument("--reps", type=int, default=2, help="timed repetitions per path (default 2)")
    p.add_argument(
        "--warmup-runs", type=int, default=0, help="untimed runs of each variant first (default 0)"
    )
    p.add_argument("--level", type=int, default=1, help="zstd level, both sides (default 1)")
    p.add_argument(
        "--threads", type=int, default=cores, help=f"zstd threads, both sides (default {cores})"
    )
    p.add_argument(
        "--parallel",
        type=int,
        default=cores,
        help=f"tool parallelism (mariadb-backup --parallel, mydumper -t, service"
        f" backup_parallel; default {cores})",
    )
    p.add_argument(
        "--heartbeat",
        type=float,
        default=None,
        help="service heartbeat_seconds (how often Process is updated; default: the service's)",
    )
    p.add_argument(
        "--poll", type=float, default=0.05, help="DescribeBackupTasks interval (default 0.05 s)"
    )
    p.add_argument(
        "--profile",
        choices=("wall", "cpu", "gil"),
        default="",
        help="record the service with py-spy during API runs (bench/.data/profiles/;"
        " summarise with bench/profile_summary.py): wall = every thread, blocked or not;"
        " cpu = running threads; gil = the thread holding the GIL. Slows the API side:"
        " for diagnosis, not for figures",
    )
    p.add_argument(
        "--keep-servers",
        action="store_true",
        help="leave the bench servers running and keep the service's state at the end",
    )
    p.add_argument(
        "--quiet-threshold",
        type=float,
        default=0.3,
        help="before each run, wait until other processes keep fewer than this many cores"
        " busy (the machine is shared; default 0.3)",
    )
    p.add_argument(
        "--quiet-timeout",
        type=float,
        default=30,
        help="longest wait for a quiet machine before a run (default 30 s)",
    )
    p.add_argument(
        "--max-others",
        type=float,
        default=0.5,
        help="a run during which other processes kept more cores busy than this is noisy:"
        " it is repeated (see --retries) and flagged if it stays so (default 0.5)",
    )
    p.add_argument(
        "--retries",
        type=int,
        default=2,
        help="how often a noisy run is repeated (default 2; never for the incremental path)",
    )
    p.add_argument(
        "--no-pin",
        action="store_true",
        help="run on the live src/ tree instead of a copy taken at start",
    )
    p.add_argument("--mariadb-tables", type=int, default=4, help="sysbench --tables (default 4)")
    p.add_argument(
        "--mariadb-table-size",
        type=int,
        default=None,
        help="sysbench --table-size (default: from --size)",
    )
    p.add_argument(
        "--pgbench-scale", type=int, default=None, help="pgbench -s (default: 70 per GiB)"
    )
    a = p.parse_args(argv)
    engines = []
    for name in filter(None, (e.strip().lower() for e in a.engines.split(","))):
        if name not in ENGINES:
            p.error(f"unknown engine {name!r}")
        engines.append(ENGINES[name])
    only = tuple(filter(None, (k.strip() for k in a.only.split(","))))
    unknown = [k for k in only if k not in keys]
    if unknown:
        p.error(f"unknown path {unknown[0]!r}; paths: {', '.join(keys)}")
    if a.reps < 1 or a.size <= 0:
        p.error("--reps must be >= 1 and --size > 0")
    return Options(
        engines=tuple(dict.fromkeys(engines)),
        only=only,
        size_gib=a.size,
        reps=a.reps,
        level=a.level,
        threads=a.threads,
        parallel=a.parallel,
        heartbeat=a.heartbeat,
        poll=a.poll,
        warmup_runs=a.warmup_runs,
        profile=a.profile,
        keep_servers=a.keep_servers,
        quiet_threshold=a.quiet_threshold,
        quiet_timeout=a.quiet_timeout,
        max_others=a.max_others,
        retries=a.retries,
        mariadb_tables=a.mariadb_tables,
        mariadb_table_size=a.mariadb_table_size,
        pgbench_scale=a.pgbench_scale,
    )


def machine() -> dict[str, Any]:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(int(mem) / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def start_servers(options: Options) -> dict[str, BenchServer]:
    servers: dict[str, BenchServer] = {}
    if MARIADB in options.engines:
        servers[MARIADB] = ensure_mariadb(
            options.size_gib, options.mariadb_tables, options.mariadb_table_size, options.parallel
        )
    if POSTGRES in options.engines:
        servers[POSTGRES] = ensure_postgres(options.size_gib, options.pgbench_scale)
    for s in servers.values():
        t0 = time.monotonic()
        read = warm_page_cache(s.server.data_dir)
        say(
            f"[data] {s.engine}: {s.description}: {s.data_bytes / 2**30:.2f} GiB"
            f" ({s.database}); page cache warmed with {read / 2**30:.2f} GiB of data files"
            f" in {time.monotonic() - t0:.1f} s"
        )
    return servers


def start_service(options: Options, servers: dict[str, BenchServer]) -> Bench:
    root = DATA_ROOT / "service"
    remove(root)
    settings: dict[str, Any] = {
        "compression": "zstd",
        "compression_level": options.level,
        "compression_threads": options.threads,
        "backup_parallel": options.parallel,
        "daily_backup_limit": 1000,
        "scheduler_enabled": False,  # no automated backup in the middle of a measurement
    }
    if options.heartbeat is not None:
        settings["heartbeat_seconds"] = options.heartbeat
    service = ServiceProcess(root, free_port(), settings)
    key = service.add_key()
    instances = {engine: service.register(s.server) for engine, s in servers.items()}
    service.start()
    say(f"[service] rdsbackup serve on {service.url} (pid {service.pid}), settings {settings}")
    return Bench(options, servers, service, RdsClient(service.url, key), instances)


def selected_paths(options: Options) -> list[Any]:
    paths = all_paths(options.level, options.threads, options.parallel)
    return [
        p
        for p in paths
        if p.engine in options.engines and (not options.only or p.key in options.only)
    ]


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    # Stop cleanly (service and servers stopped) on Ctrl-C or SIGTERM, even when started
    # in the background by a shell, which makes SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    options = parse_args(argv)
    source = source_info()  # now: the pinned copy was taken just before this process began
    started = time.monotonic()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    servers: dict[str, BenchServer] = {}
    bench: Bench | None = None
    results: list[PathResult] = []
    try:
        servers = start_servers(options)
        bench = start_service(options, servers)
        for path in selected_paths(options):
            say(f"[path] {path.title}")
            results.append(run_path(bench, path, say))
    finally:
        if bench is not None:
            bench.service.stop()
            if not options.keep_servers:
                remove(bench.service.root)
            remove(bench.scratch)
        if not options.keep_servers:
            for s in servers.values():
                s.server.stop()
    elapsed = time.monotonic() - started
    meta = {
        "started": stamp,
        "elapsed_seconds": round(elapsed, 1),
        "machine": machine(),
        "options": {k: v for k, v in vars(options).items()},
        "data": {
            e: {"description": s.description, "bytes": s.data_bytes} for e, s in servers.items()
        },
        "tools": tool_versions(),
        "source": source,
    }
    out_dir = DATA_ROOT / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stamp}.json").write_text(to_json(results, meta))
    notes = observations(results)
    (out_dir / f"{stamp}.md").write_text(
        markdown_table(results) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    )
    say("")
    say(text_table(results))
    say("")
    say("s/GiB: seconds per GiB of source data (MariaDB: sbtest .ibd files; PostgreSQL:")
    say("pg_database_size); medians of the timed runs; raw times include fsync of the output.")
    say("others: most cores that other processes on this (shared) machine kept busy during")
    say("any of the row's runs; compare ratios with care above ~0.3.")
    say("")
    for note in notes:
        say(f"- {note}")
    say("")
    say(f"results: {out_dir / stamp}.json / .md; bench took {elapsed / 60:.1f} min")
    return 0


def source_info() -> dict[str, str]:
    """Which rdsbackup ran: the commit, and the files of ``src/`` that differed from it
    when the run started (when the copy was pinned)."""
    import rdsbackup

    def git(*args: str) -> str:
        out = subprocess.run(
            ["git", "-C", str(BENCH_DIR.parent), *args], capture_output=True, text=True
        )
        return out.stdout.strip()

    return {
        "rdsbackup": str(Path(rdsbackup.__file__).parent),
        "commit": git("rev-parse", "--short", "HEAD"),
        "modified": " ".join(git("status", "--porcelain", "--", "src").split()[1::2]),
    }


def tool_versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for tool in ("mariadb-backup", "mariadb-dump", "mydumper", "zstd", "gzip", "pg_dump"):
        path = shutil.which(tool)
        if path is None:
            continue
        proc = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
        text = (proc.stdout or proc.stderr).strip().splitlines()
        out[tool] = text[0] if text else "?"
    return out
