"""The compared paths: each service backup method against the raw tool pipelines an
operator would run instead, with the same compression where the tools allow it; then
the restore paths (``restore_paths.py``), which restore the sets these backups stored.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from datasets import MARIADB_DB, POSTGRES_DB, mariadb_sql, pg_env, pg_tool, remove
from harness import Bench, BenchPath, RawVariant, Variant
from measure import Run, Stage, Unavailable, process_cpu, run_pipeline, tree_size
from restore_paths import restore_paths

MARIADB = "MariaDB"
POSTGRES = "PostgreSQL"
RAW_LSN = "mariadb_raw_lsn"
"""``state`` key: to_lsn of the last raw mariadb-backup (full or incremental)."""


# -- MariaDB raw pipelines -------------------------------------------------------------------


@contextmanager
def _mysql_options(bench: Bench) -> Iterator[Path]:
    server = bench.servers[MARIADB].server
    bench.scratch.mkdir(parents=True, exist_ok=True)
    path = bench.scratch / "client.cnf"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(
            "[client]\nhost=127.0.0.1\n"
            f"port={server.port}\nuser={server.admin_user}\npassword={server.admin_password}\n"
        )
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def _read_to_lsn(folder: Path) -> str:
    for line in (folder / "xtrabackup_checkpoints").read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "to_lsn":
            return value.strip()
    raise RuntimeError("mariadb-backup wrote no to_lsn")


def _mariadb_backup(bench: Bench, *, incremental: bool) -> Run:
    server = bench.servers[MARIADB].server
    target, lsn_dir = bench.fresh_dir("mb-target"), bench.fresh_dir("mb-lsn")
    with _mysql_options(bench) as options:
        args = [
            "mariadb-backup",
            f"--defaults-extra-file={options}",
            "--backup",
            "--stream=xbstream",
            f"--parallel={bench.options.parallel}",
            f"--datadir={server.data_dir}",
            f"--target-dir={target}",
            f"--extra-lsndir={lsn_dir}",
        ]
        if incremental:
            args.append(f"--incremental-lsn={bench.state[RAW_LSN]}")
        run = bench.pipeline(MARIADB, [Stage(args), Stage(bench.zstd)], "mariadb.xbstream.zst")
    bench.state[RAW_LSN] = _read_to_lsn(lsn_dir)
    remove(target)
    remove(lsn_dir)
    return run


def mariadb_physical_raw(bench: Bench) -> Run:
    return _mariadb_backup(bench, incremental=False)


def mariadb_incremental_raw(bench: Bench) -> Run:
    if RAW_LSN not in bench.state:
        raise Unavailable("no raw full backup ran before (the physical path must run first)")
    return _mariadb_backup(bench, incremental=True)


def mariadb_mydumper_raw(bench: Bench) -> Run:
    """``mydumper -t N`` into a folder, then ``tar | zstd`` of that folder (one file, as
    the service stores one object): both steps timed."""
    server = bench.servers[MARIADB].server
    dump_dir = bench.fresh_dir("mydumper")
    server_pid = bench.servers[MARIADB].pid()
    server_cpu = process_cpu(server_pid)
    dumped = run_pipeline(
        [
            Stage(
                [
                    "mydumper",
                    "--host=127.0.0.1",
                    f"--port={server.port}",
                    f"--user={server.admin_user}",
                    f"--password={server.admin_password}",
                    f"--threads={bench.options.parallel}",
                    f"--database={MARIADB_DB}",
                    f"--outputdir={dump_dir}",
                    "--verbose=1",
                ]
            )
        ],
        None,
        bench.log_file(),
    )
    raw_bytes = tree_size(dump_dir)
    packed = bench.pipeline(
        MARIADB, [Stage(["tar", "-C", str(dump_dir), "-cf", "-", "."]), Stage(bench.zstd)], "x"
    )
    remove(dump_dir)
    return Run(
        seconds=dumped.seconds + packed.seconds,
        size=packed.size,
        cpu_seconds=dumped.cpu_seconds + packed.cpu_seconds,
        server_cpu_seconds=process_cpu(server_pid) - server_cpu,
        extra={
            "dump_seconds": round(dumped.seconds, 2),
            "tar_zstd_seconds": round(packed.seconds, 2),
            "dump_bytes": raw_bytes,
        },
    )


def _mariadb_dump(bench: Bench, compressor: list[str], name: str) -> Run:
    with _mysql_options(bench) as options:
        dump = [
            "mariadb-dump",
            f"--defaults-extra-file={options}",
            "--single-transaction",
            "--quick",
            "--databases",
            MARIADB_DB,
        ]
        return bench.pipeline(MARIADB, [Stage(dump), Stage(compressor)], name)


def mariadb_dump_gzip_raw(bench: Bench) -> Run:
    return _mariadb_dump(bench, ["gzip", "-c"], "dump.sql.gz")


def mariadb_dump_zstd_raw(bench: Bench) -> Run:
    return _mariadb_dump(bench, bench.zstd, "dump.sql.zst")


def change_five_percent(bench: Bench, rep: int) -> None:
    """Change 5 % of the rows (a different 5 % each repetition) before an incremental.

    ``c = REVERSE(c)`` keeps every row's length and no index changes, so the update is
    made in place and the tables do not grow from run to run (``k = k + 1`` would add
    secondary-index entries and grow the files)."""
    tables = sorted(
        row[0]
        for row in mariadb_sql(
            bench.servers[MARIADB].server,
            "SELECT table_name FROM information_schema.tables"
            f" WHERE table_schema = '{MARIADB_DB}' AND table_name LIKE 'sbtest%'",
        )
    )
    server = bench.servers[MARIADB].server
    mariadb_sql(
        server,
        *[f"UPDATE {MARIADB_DB}.{t} SET c = REVERSE(c) WHERE id % 20 = {rep % 20}" for t in tables],
    )


# -- PostgreSQL raw pipelines ----------------------------------------------------------------


def pg_basebackup_raw(bench: Bench) -> Run:
    server = bench.servers[POSTGRES].server
    args = [
        pg_tool("pg_basebackup"),
        "--pgdata=-",
        "--format=tar",
        "--wal-method=fetch",
        "--checkpoint=fast",
        "--no-password",
    ]
    return bench.pipeline(
        POSTGRES, [Stage(args, env=pg_env(server)), Stage(bench.zstd)], "base.tar.zst"
    )


def pg_dump_zstd_raw(bench: Bench) -> Run:
    server = bench.servers[POSTGRES].server
    args = [pg_tool("pg_dump"), "--format=custom", "--compress=0", "--no-password"]
    env = pg_env(server, POSTGRES_DB)
    return bench.pipeline(POSTGRES, [Stage(args, env=env), Stage(bench.zstd)], "bench.dump.zst")


def pg_dump_default_raw(bench: Bench) -> Run:
    server = bench.servers[POSTGRES].server
    args = [pg_tool("pg_dump"), "--format=custom", "--no-password"]
    return bench.pipeline(POSTGRES, [Stage(args, env=pg_env(server, POSTGRES_DB))], "bench.dump")


# -- the list ---------------------------------------------------------------------------------


def _api(engine: str, method: str, kind: str = "FullBackup") -> Variant:
    def run(bench: Bench) -> Run:
        return bench.api_backup(engine, method, kind)

    return run


def all_paths(level: int, threads: int, parallel: int) -> list[BenchPath]:
    z = f"zstd -{level} -T{threads}"
    return [
        BenchPath(
            key="mariadb-physical",
            title="MariaDB physical",
            engine=MARIADB,
            api=_api(MARIADB, "Physical"),
            api_label="API Physical",
            raws=(
                RawVariant(
                    f"mariadb-backup --stream=xbstream --parallel={parallel} | {z}",
                    mariadb_physical_raw,
                ),
            ),
        ),
        BenchPath(
            key="mariadb-incremental",
            title="MariaDB incremental (5 % rows changed)",
            engine=MARIADB,
            api=_api(MARIADB, "Physical", "IncrementalBackup"),
            api_label="API Physical IncrementalBackup",
            raws=(
                RawVariant(
                    f"mariadb-backup --incremental-lsn --parallel={parallel} | {z}",
                    mariadb_incremental_raw,
                ),
            ),
            before_rep=change_five_percent,
            relative_to="mariadb-physical",
            note="each repetition first runs UPDATE sbtestN SET c=REVERSE(c) WHERE id % 20 = rep",
        ),
        BenchPath(
            key="mariadb-logical",
            title="MariaDB logical",
            engine=MARIADB,
            api=_api(MARIADB, "Logical"),
            api_label="API Logical",
            raws=(
                RawVariant(f"mydumper -t {parallel} + tar | {z}", mariadb_mydumper_raw),
                RawVariant(f"mariadb-dump --single-transaction | {z}", mariadb_dump_zstd_raw),
                RawVariant(
                    "mariadb-dump --single-transaction | gzip",
                    mariadb_dump_gzip_raw,
                    same_compression=False,
                    target=0.25,
                ),
            ),
        ),
        BenchPath(
            key="mariadb-snapshot",
            title="MariaDB snapshot",
            engine=MARIADB,
            api=_api(MARIADB, "Snapshot"),
            api_label="API Snapshot",
        ),
        BenchPath(
            key="postgres-physical",
            title="PostgreSQL physical",
            engine=POSTGRES,
            api=_api(POSTGRES, "Physical"),
            api_label="API Physical",
            raws=(
                RawVariant(
                    f"pg_basebackup -Ft -X fetch --checkpoint=fast -D - | {z}", pg_basebackup_raw
                ),
            ),
        ),
        BenchPath(
            key="postgres-logical",
            title="PostgreSQL logical",
            engine=POSTGRES,
            api=_api(POSTGRES, "Logical"),
            api_label="API Logical",
            raws=(
                RawVariant(f"pg_dump -Fc -Z0 | {z}", pg_dump_zstd_raw),
                RawVariant("pg_dump -Fc (built-in gzip)", pg_dump_default_raw, False),
            ),
        ),
        BenchPath(
            key="postgres-snapshot",
            title="PostgreSQL snapshot",
            engine=POSTGRES,
            api=_api(POSTGRES, "Snapshot"),
            api_label="API Snapshot",
        ),
        *restore_paths(),
    ]
