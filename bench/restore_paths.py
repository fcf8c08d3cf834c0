"""The restore paths: CloneDBInstance of a set the backup paths stored in this run,
against the same stored objects restored by hand with the engine's own tools.

Both sides end with a started server holding the data: the API side when
DescribeDBInstanceAttribute first shows the clone ``Running``, the raw side when the
server it started (:func:`rdsbackup.instances.servers.local_server`, as the service
uses) accepts the admin login. The raw side reads the set's stored files directly
(``zstd -d``), so both restore identical bytes. Clones and raw servers are stopped and
removed after each run (:meth:`harness.Bench.after_run`).
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from datasets import pg_env, pg_tool, remove
from harness import Bench, BenchPath, RawVariant, StoredSetRef, Variant
from measure import Run, Stage, children_cpu, process_cpu, run_pipeline, tree_size

from rdsbackup.instances.servers import LocalServer

MARIADB = "MariaDB"
POSTGRES = "PostgreSQL"
RESTORE_TARGET = 1.15
PG_RESTORE_JOBS = 2
"""``pg_restore --jobs`` of the service's logical restores (``PostgresEngine.restore_jobs``)."""


def _zcat(*files: Path) -> Stage:
    return Stage(["zstd", "-d", "-q", "-c", *(str(f) for f in files)])


class _Timed:
    """Wall time and CPU of a raw restore: the tools it reaps, and the server it leaves
    running (not reaped, so counted from /proc)."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.cpu0 = children_cpu()
        self.t0 = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def run(self, *stages: Stage, output: Path | None = None) -> None:
        run_pipeline(list(stages), output, self.bench.log_file())

    def done(self, server: LocalServer, stored: StoredSetRef, **extra: object) -> Run:
        seconds = self.elapsed()
        return Run(
            seconds=seconds,
            size=tree_size(server.data_dir),
            cpu_seconds=children_cpu() - self.cpu0,
            server_cpu_seconds=process_cpu(server.pid()),
            extra={"backup_id": stored.backup_id, "set_bytes": stored.size, **extra},
        )


# -- MariaDB -----------------------------------------------------------------------------


def client_options(server: LocalServer) -> Path:
    """A 0600 client option file with the server's admin login."""
    path = server.base_dir / "client.cnf"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(
            "[client]\nhost=127.0.0.1\n"
            f"port={server.port}\nuser={server.admin_user}\npassword={server.admin_password}\n"
        )
    return path


def _mariadb_client(options: Path) -> Stage:
    """The client as the service runs it (engines/mariadb/logical.py ``load_object``)."""
    return Stage(
        ["mariadb", f"--defaults-extra-file={options}", "--binary-mode", "--max-allowed-packet=1G"]
    )


def _mariadb_physical_raw(bench: Bench, back: str) -> Run:
    """``zstd -d | mbstream -x`` into a folder, ``mariadb-backup --prepare``, then
    ``--copy-back`` or ``--move-back`` into a new data directory, and start a server."""
    stored = bench.stored_set(MARIADB, "Physical")
    timed = _Timed(bench)
    work = bench.fresh_dir("restore-mb-work")
    bench.after_run(functools.partial(remove, work))
    server = bench.restore_server(MARIADB, "restore-mariadb")
    timed.run(
        _zcat(stored.path("data.xbstream")), Stage(["mbstream", "-x", "-C", str(work)], cwd=work)
    )
    extracted = timed.elapsed()
    timed.run(Stage(["mariadb-backup", "--prepare", f"--target-dir={work}"], cwd=work))
    prepared = timed.elapsed()
    server.create_dirs()
    timed.run(
        Stage(
            [
                "mariadb-backup",
                "--no-defaults",
                f"--{back}",
                f"--target-dir={work}",
                f"--datadir={server.data_dir}",
            ],
            cwd=work,
        )
    )
    copied = timed.elapsed()
    server.start()
    return timed.done(
        server,
        stored,
        extract_s=round(extracted, 2),
        prepare_s=round(prepared - extracted, 2),
        back_s=round(copied - prepared, 2),
        start_s=round(timed.elapsed() - copied, 2),
    )


def mariadb_copy_back_raw(bench: Bench) -> Run:
    return _mariadb_physical_raw(bench, "copy-back")


def mariadb_move_back_raw(bench: Bench) -> Run:
    return _mariadb_physical_raw(bench, "move-back")


def _fresh_mariadb(bench: Bench) -> tuple[LocalServer, Path]:
    server = bench.restore_server(MARIADB, "restore-mariadb")
    server.initialize()
    server.start()
    return server, client_options(server)


def _logical_objects(stored: StoredSetRef) -> tuple[list[Path], list[Path], list[Path]]:
    """What must be loaded first, the set's data objects (loaded side by side), and
    what must follow them."""
    names = [n.removesuffix(".zst") for n in stored.objects() if n != "manifest.json"]
    before = [stored.path(n) for n in names if n == "schema.sql"]
    data = [stored.path(n) for n in names if n.startswith("data-")]
    after = [stored.path(n) for n in names if n == "objects.sql"]
    if not data:  # a single-stream set
        data = [stored.path("dump.sql")]
    return before, data, after


def mariadb_logical_parallel_raw(bench: Bench) -> Run:
    """A fresh server, then ``schema.sql``, one ``zstd -d | mariadb`` per data object
    side by side, then ``objects.sql`` (as the service loads them)."""
    stored = bench.stored_set(MARIADB, "Logical")
    before, data, after = _logical_objects(stored)
    timed = _Timed(bench)
    server, options = _fresh_mariadb(bench)
    started = timed.elapsed()
    for f in before:
        timed.run(_zcat(f), _mariadb_client(options))
    _side_by_side([functools.partial(timed.run, _zcat(f), _mariadb_client(options)) for f in data])
    for f in after:
        timed.run(_zcat(f), _mariadb_client(options))
    return timed.done(server, stored, server_ready_s=round(started, 2), streams=len(data))


def mariadb_logical_single_raw(bench: Bench) -> Run:
    """A fresh server, then every object through one ``zstd -d | mariadb``."""
    stored = bench.stored_set(MARIADB, "Logical")
    before, data, after = _logical_objects(stored)
    timed = _Timed(bench)
    server, options = _fresh_mariadb(bench)
    started = timed.elapsed()
    timed.run(_zcat(*before, *data, *after), _mariadb_client(options))
    return timed.done(server, stored, server_ready_s=round(started, 2), streams=1)


def _side_by_side(tasks: list[Callable[[], None]]) -> None:
    errors: list[BaseException] = []

    def call(task: Callable[[], None]) -> None:
        try:
            task()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=call, args=(t,)) for t in tasks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


# -- PostgreSQL --------------------------------------------------------------------------


def _postgres_physical_raw(bench: Bench, verify: bool) -> Run:
    """``zstd -d | tar -x`` into a new data directory and start a server on it
    (``verify``: run ``pg_verifybackup`` in between, as the service does)."""
    stored = bench.stored_set(POSTGRES, "Physical")
    timed = _Timed(bench)
    server = bench.restore_server(POSTGRES, "restore-postgresql")
    server.create_dirs()
    timed.run(_zcat(stored.path("base.tar")), Stage(["tar", "-x", "-C", str(server.data_dir)]))
    extracted = timed.elapsed()
    if verify:
        timed.run(Stage([pg_tool("pg_verifybackup"), "--quiet", str(server.data_dir)]))
    verified = timed.elapsed()
    server.start()
    return timed.done(
        server,
        stored,
        extract_s=round(extracted, 2),
        verify_s=round(verified - extracted, 2),
        start_s=round(timed.elapsed() - verified, 2),
    )


def postgres_tar_raw(bench: Bench) -> Run:
    return _postgres_physical_raw(bench, verify=False)


def postgres_tar_verify_raw(bench: Bench) -> Run:
    return _postgres_physical_raw(bench, verify=True)


def postgres_logical_raw(bench: Bench) -> Run:
    """A fresh server, then per database of the set: ``zstd -d`` of its dump to a file
    (``pg_restore -j`` needs a seekable file) and ``pg_restore -j N`` (``--create``
    unless the database exists, as the service does). The set's globals script is not
    replayed: the fresh server already has the one role it holds."""
    stored = bench.stored_set(POSTGRES, "Logical")
    manifest = stored.manifest()
    objects: dict[str, str] = json.loads(manifest.get("extra", {}).get("db_objects", "{}"))
    timed = _Timed(bench)
    server = bench.restore_server(POSTGRES, "restore-postgresql")
    server.initialize()
    server.start()
    started = timed.elapsed()
    spool = server.base_dir / "restore.dump"
    steps: dict[str, float] = {}
    for db in manifest["databases"]:
        t0 = timed.elapsed()
        timed.run(_zcat(stored.path(objects.get(db, f"{db}.dump"))), output=spool)
        t1 = timed.elapsed()
        args = [
            pg_tool("pg_restore"),
            "--exit-on-error",
            "--no-password",
            f"--jobs={PG_RESTORE_JOBS}",
        ]
        args += ["--dbname=postgres", "--create"] if db != "postgres" else ["--dbname=postgres"]
        timed.run(Stage([*args, str(spool)], env=pg_env(server)))
        steps[f"{db}_spool_s"] = round(t1 - t0, 2)
        steps[f"{db}_pg_restore_s"] = round(timed.elapsed() - t1, 2)
        spool.unlink()
    return timed.done(
        server,
        stored,
        server_ready_s=round(started, 2),
        databases=manifest["databases"],
        **steps,
    )


# -- the list -------------------------------------------------------------------------------


def _clone(engine: str, method: str) -> Variant:
    def run(bench: Bench) -> Run:
        return bench.api_clone(engine, method)

    return run


def _make_set(engine: str, method: str) -> Callable[[Bench], None]:
    def setup(bench: Bench) -> None:
        bench.stored_set(engine, method)

    return setup


def restore_paths() -> list[BenchPath]:
    return [
        BenchPath(
            key="mariadb-physical-restore",
            title="MariaDB physical restore",
            engine=MARIADB,
            operation="restore",
            api=_clone(MARIADB, "Physical"),
            api_label="API CloneDBInstance (Physical set)",
            raws=(
                RawVariant(
                    "zstd -d | mbstream -x; mariadb-backup --prepare; --move-back; start",
                    mariadb_move_back_raw,
                ),
                RawVariant(
                    "zstd -d | mbstream -x; mariadb-backup --prepare; --copy-back; start",
                    mariadb_copy_back_raw,
                ),
            ),
            setup=_make_set(MARIADB, "Physical"),
            ratio_target=RESTORE_TARGET,
        ),
        BenchPath(
            key="mariadb-logical-restore",
            title="MariaDB logical restore",
            engine=MARIADB,
            operation="restore",
            api=_clone(MARIADB, "Logical"),
            api_label="API CloneDBInstance (Logical set)",
            raws=(
                RawVariant(
                    "new server; schema.sql, then zstd -d | mariadb per data object, side by"
                    " side; then objects.sql",
                    mariadb_logical_parallel_raw,
                ),
                RawVariant(
                    "new server; zstd -d (all objects) | mariadb, one stream",
                    mariadb_logical_single_raw,
                    reference=True,
                ),
            ),
            setup=_make_set(MARIADB, "Logical"),
            ratio_target=RESTORE_TARGET,
        ),
        BenchPath(
            key="mariadb-snapshot-restore",
            title="MariaDB snapshot restore",
            engine=MARIADB,
            operation="restore",
            api=_clone(MARIADB, "Snapshot"),
            api_label="API CloneDBInstance (Snapshot set)",
            setup=_make_set(MARIADB, "Snapshot"),
            ratio_target=RESTORE_TARGET,
        ),
        BenchPath(
            key="postgres-physical-restore",
            title="PostgreSQL physical restore",
            engine=POSTGRES,
            operation="restore",
            api=_clone(POSTGRES, "Physical"),
            api_label="API CloneDBInstance (Physical set)",
            raws=(
                RawVariant("zstd -d | tar -x; start", postgres_tar_raw),
                RawVariant(
                    "zstd -d | tar -x; pg_verifybackup; start",
                    postgres_tar_verify_raw,
                    reference=True,
                ),
            ),
            setup=_make_set(POSTGRES, "Physical"),
            ratio_target=RESTORE_TARGET,
        ),
        BenchPath(
            key="postgres-logical-restore",
            title="PostgreSQL logical restore",
            engine=POSTGRES,
            operation="restore",
            api=_clone(POSTGRES, "Logical"),
            api_label="API CloneDBInstance (Logical set)",
            raws=(
                RawVariant(
                    f"new server; zstd -d > file; pg_restore -j{PG_RESTORE_JOBS}",
                    postgres_logical_raw,
                ),
            ),
            setup=_make_set(POSTGRES, "Logical"),
            ratio_target=RESTORE_TARGET,
        ),
        BenchPath(
            key="postgres-snapshot-restore",
            title="PostgreSQL snapshot restore",
            engine=POSTGRES,
            operation="restore",
            api=_clone(POSTGRES, "Snapshot"),
            api_label="API CloneDBInstance (Snapshot set)",
            setup=_make_set(POSTGRES, "Snapshot"),
            ratio_target=RESTORE_TARGET,
        ),
    ]
