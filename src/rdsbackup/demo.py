"""``make run``: a demo account with a key and two local instances with sample data,
created on the first run and reused afterwards."""

from __future__ import annotations

import json
from dataclasses import dataclass

from rich.console import Console

from rdsbackup.app import Core
from rdsbackup.engines.families import FAMILIES
from rdsbackup.instances.sample_data import load_sample

DEMO_ACCOUNT = "demo"
ENGINES = tuple(f.name for f in FAMILIES)


@dataclass(frozen=True)
class DemoInfo:
    access_key_id: str
    access_key_secret: str
    instances: dict[str, str]


def ensure_demo(core: Core) -> DemoInfo:
    path = core.settings.state_dir / "demo.json"
    state: dict[str, object] = json.loads(path.read_text()) if path.exists() else {}
    account_id = core.accounts.ensure_account(DEMO_ACCOUNT)
    key_id = str(state.get("access_key_id", ""))
    record = core.keys.lookup(key_id) if key_id else None
    if record is None:
        key_id, _ = core.accounts.create_key(DEMO_ACCOUNT, description="make run demo key")
        record = core.keys.lookup(key_id)
        assert record is not None
    known = set(core.inventory.ids())
    instances = dict(state.get("instances", {}))  # type: ignore[call-overload]
    for engine in ENGINES:
        if instances.get(engine) not in known:
            instance_id = core.supervisor.provision(
                engine,
                account_id,
                description=f"demo {engine} instance",
                region_id=core.settings.region_id,
                zone_id=core.settings.zone_id,
            )
            load_sample(engine, core.inventory.access(instance_id))
            core.inventory.probe(instance_id)
            instances[engine] = instance_id
    path.write_text(json.dumps({"access_key_id": key_id, "instances": instances}, indent=2))
    return DemoInfo(key_id, record.secret, instances)


def print_welcome(console: Console, info: DemoInfo, host: str, port: int) -> None:
    endpoint = f"{host}:{port}"
    console.rule("rdsbackup")
    console.print(f"Endpoint:             http://{endpoint}/  (Alibaba RDS API 2014-08-15)")
    console.print(f"AccessKeyId:          {info.access_key_id}")
    console.print(f"AccessKeySecret:      {info.access_key_secret}")
    for engine, instance_id in info.instances.items():
        console.print(f"{engine + ' instance:':<22}{instance_id}")
    snippet = f'''import time
from alibabacloud_rds20140815.client import Client
from alibabacloud_rds20140815 import models
from alibabacloud_tea_openapi.models import Config

client = Client(Config(access_key_id="{info.access_key_id}",
                       access_key_secret="{info.access_key_secret}",
                       endpoint="{endpoint}", protocol="http", region_id="cn-hangzhou"))
job = client.create_backup(models.CreateBackupRequest(
    dbinstance_id="{info.instances["MariaDB"]}", backup_method="Physical")).body.backup_job_id
while True:
    task = client.describe_backup_tasks(models.DescribeBackupTasksRequest(
        dbinstance_id="{info.instances["MariaDB"]}", backup_job_id=int(job)
    )).body.items.backup_job[0]
    print(task.backup_status, task.process)
    if task.backup_status in ("Finished", "Failed"):
        break
    time.sleep(1)
print(client.describe_backups(models.DescribeBackupsRequest(
    dbinstance_id="{info.instances["MariaDB"]}", backup_id=task.backup_id)).body.to_map())
'''
    console.print("\nPython (pip install alibabacloud-rds20140815):")
    print(snippet, flush=True)  # raw: a wrapped line would not paste
    console.rule()
