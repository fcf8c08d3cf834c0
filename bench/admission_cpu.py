"""CPU of one CreateBackup inside the service, without HTTP: the API endpoint's
``handle`` called in a loop on a service built in this process (``build_service``:
SQLite or PostgreSQL catalog, Celery dispatcher on a throw-away Redis, instances on a
throw-away MariaDB). It isolates what the service's own code costs per admission from
uvicorn, the client and the GIL handoffs that ``bench/scale.py`` measures with them.

``--compare PATH`` runs the same measurement, alternating, with the ``src`` of another
checkout first on ``sys.path`` (``git worktree add /tmp/old <rev>``): an A/B on the same
machine minutes apart, which is what the figures in docs/performance.md are.

    .venv/bin/python bench/admission_cpu.py [--catalog sqlite|postgresql] [--calls 1000]
        [--rounds 3] [--compare /tmp/old]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

DATA = Path(__file__).resolve().parent / ".data" / "admission_cpu"


def measure(catalog: str, calls: int, mariadb_port: int, password: str, redis: str) -> float:
    """Run in a child: ms of CPU per CreateBackup, as the last line of stdout."""
    from datetime import UTC, datetime
    from typing import cast
    from urllib.parse import parse_qsl

    from cryptography.fernet import Fernet
    from rdsapi import Key, signed_query
    from sqlalchemy import Table, insert

    from rdsbackup.api.protocol import RawRequest
    from rdsbackup.app import build_service
    from rdsbackup.catalog.models import Instance
    from rdsbackup.catalog.secrets import SecretBox
    from rdsbackup.config import Settings
    from rdsbackup.instances.inventory import new_instance_id
    from rdsbackup.service.auth import AccountAdmin

    state = Path(tempfile.mkdtemp(dir=DATA))
    secret = Fernet.generate_key().decode()
    settings: dict[str, Any] = {
        "state_dir": str(state),
        "secret_key": secret,
        "api_rate_per_second": 1e6,
        "api_burst": 1_000_000,
        "scheduler_enabled": False,
        "log_backup_enabled": False,
        "dispatcher": "celery",
        "broker_url": redis,
    }
    if catalog != "sqlite":
        settings["catalog_url"] = catalog
    service = build_service(Settings(**settings))
    core = service.core
    box = SecretBox(secret.encode())
    admin = AccountAdmin(core.catalog, box)
    account_id = admin.ensure_account("bench")
    key = Key(*admin.create_key("bench"))
    now = datetime.now(UTC).replace(tzinfo=None)
    ids = [new_instance_id("MariaDB") for _ in range(calls + 50)]
    rows = [
        {
            "id": i,
            "account_id": account_id,
            "engine": "MariaDB",
            "engine_version": "",
            "host": "127.0.0.1",
            "port": mariadb_port,
            "admin_user": "bench_admin",
            "password_ciphertext": box.seal(password),
            "local": False,
            "status": "Running",
            "description": "bench",
            "created_at": now,
        }
        for i in ids
    ]
    with core.catalog.write() as s:
        s.execute(insert(cast(Table, Instance.__table__)), rows)
    endpoint = _endpoint(service.asgi)

    def raw(instance_id: str) -> RawRequest:
        query = signed_query(
            key, "CreateBackup", {"DBInstanceId": instance_id, "BackupMethod": "Logical"}
        )
        return RawRequest(
            method="POST",
            path="/",
            query=parse_qsl(query, keep_blank_values=True),
            headers={"content-length": "0"},
            body=b"",
        )

    requests = [raw(i) for i in ids]
    for r in requests[:50]:  # warm up: imports, pools, statement caches
        assert endpoint.handle(r).status_code == 200
    cpu0 = time.process_time()
    for r in requests[50:]:
        response = endpoint.handle(r)
        assert response.status_code == 200, response.body
    per_call = (time.process_time() - cpu0) / calls * 1000
    core.catalog.dispose()
    return per_call


def _endpoint(asgi: Any) -> Any:
    """The RpcEndpoint behind the Starlette app's routes."""
    from rdsbackup.api.http import RpcEndpoint

    for route in asgi.routes:
        app = getattr(route, "app", None)
        respond = getattr(app, "respond", None)
        if isinstance(getattr(respond, "__self__", None), RpcEndpoint):
            return respond.__self__
    raise RuntimeError("no RpcEndpoint among the app's routes")


def child(src: Path | None, args: argparse.Namespace, backends: Any, catalog: str) -> float:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src / "src")
    spec = {
        "catalog": catalog,
        "calls": args.calls,
        "mariadb_port": backends.mariadb.port,
        "password": backends.password,
        "redis": backends.broker_url,
    }
    done = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--catalog", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compare", type=Path, default=None, help="another checkout")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(f"{measure(**json.loads(args.child)):.3f}")
        return
    from scale import Backends

    DATA.mkdir(parents=True, exist_ok=True)
    run = Path(tempfile.mkdtemp(dir=DATA))
    for folder in (DATA.parent, DATA, run):
        folder.chmod(0o711)  # the servers' own users must reach their folders
    backends = Backends(run / "srv")
    try:
        backends.start(args.catalog == "postgresql", True)
        sides: list[tuple[str, Path | None]] = [("this checkout", None)]
        if args.compare is not None:
            sides.insert(0, (f"{args.compare}", args.compare))
        found: dict[str, list[float]] = {label: [] for label, _ in sides}
        for n in range(args.rounds):
            for label, src in sides:
                url = backends.catalog_url(args.catalog, DATA) or "sqlite"
                ms = child(src, args, backends, url)
                found[label].append(ms)
                print(f"round {n + 1} {label}: {ms:.2f} ms CPU per CreateBackup", flush=True)
        for label, values in found.items():
            print(f"{label}: {', '.join(f'{v:.2f}' for v in values)} ms ({args.catalog})")
    finally:
        backends.stop()


if __name__ == "__main__":
    main()
