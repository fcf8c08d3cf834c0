"""DescribeDBInstances, DescribeDBInstanceAttribute, DescribeDatabases, DeleteDBInstance."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rdsbackup.api.params import Params
from rdsbackup.api.protocol import Call
from rdsbackup.engines.families import API_ENGINES, family_of
from rdsbackup.service.instances import InstanceFilter
from rdsbackup.service.releases import KEEP_POLICIES
from rdsbackup.service.views import DatabaseView, InstanceView
from rdsbackup.timeutil import to_wire

if TYPE_CHECKING:
    from rdsbackup.api.actions import Handler, Services


def describe_db_instances(call: Call, svc: Services) -> dict[str, Any]:
    p = Params(call.params)
    p.required("RegionId")
    filters = InstanceFilter(
        instance_ids=tuple(p.csv("DBInstanceId", max_items=30)),
        engine=p.choice("Engine", API_ENGINES),
        status=p.optional("DBInstanceStatus"),
        resource_group_id=p.optional("ResourceGroupId"),
    )
    page_number = p.page_number()
    page_size = p.integer("PageSize", default=30, minimum=1, maximum=100) or 30
    page = svc.instances.find(call.principal, filters, page_number, page_size)
    return {
        "Items": {"DBInstance": [_instance(i) for i in page.items]},
        "TotalRecordCount": page.total,
        "PageNumber": page_number,
        "PageRecordCount": len(page.items),
    }


def describe_db_instance_attribute(call: Call, svc: Services) -> dict[str, Any]:
    p = Params(call.params)
    instance = svc.instances.get(call.principal, p.required("DBInstanceId"))
    return {"Items": {"DBInstanceAttribute": [_attribute(instance)]}}


def describe_databases(call: Call, svc: Services) -> dict[str, Any]:
    p = Params(call.params)
    instance_id = p.required("DBInstanceId")
    name = p.optional("DBName")
    status = p.choice("DBStatus", ("Creating", "Running", "Deleting"))
    page_number = p.page_number()
    page_size = p.integer("PageSize", default=30, allowed=(30, 50, 100)) or 30
    instance = svc.instances.get(call.principal, instance_id)
    found = [
        d
        for d in svc.instances.databases(call.principal, instance_id, name)
        if status is None or d.status == status
    ]
    page = found[(page_number - 1) * page_size : page_number * page_size]
    return {"Databases": {"Database": [_database(instance, d) for d in page]}}


def delete_db_instance(call: Call, svc: Services) -> dict[str, Any]:
    """Answers once the instance is gone (RDS answers at once and shows ``Deleting``;
    a local server stops in a second or two, so waiting is simpler for every client).
    Without ReleasedKeepPolicy, the backup policy's (ModifyBackupPolicy) decides."""
    p = Params(call.params)
    instance_id = p.required("DBInstanceId")
    keep = p.choice("ReleasedKeepPolicy", KEEP_POLICIES)
    if keep is None:
        policy = svc.policies.describe(call.principal, instance_id) if svc.policies else None
        keep = policy.released_keep_policy if policy else "None"
    assert svc.releases is not None
    svc.releases.delete_instance(call.principal, instance_id, keep)
    return {}


def _common(i: InstanceView) -> dict[str, Any]:
    return {
        "DBInstanceId": i.id,
        "DBInstanceDescription": i.description,
        "DBInstanceStatus": i.status,
        "Engine": i.engine,
        "EngineVersion": i.engine_version,
        "RegionId": i.region_id,
        "ZoneId": i.zone_id,
        "ResourceGroupId": i.resource_group_id,
        "LockMode": i.lock_mode,
        "LockReason": "",
        "Category": i.category,
        "DBInstanceType": "Readonly" if i.read_only else "Primary",
        "PayType": "Postpaid",
        "DBInstanceNetType": "Intranet",
        "InstanceNetworkType": "VPC",
        "DBInstanceStorageType": "local_ssd",
        "ConnectionString": i.host,
        # Extensions:
        "StatusReason": i.status_reason,
        "Managed": "Local" if i.local else "Registered",
    }


def _instance(i: InstanceView) -> dict[str, Any]:
    return {
        **_common(i),
        "CreateTime": to_wire(i.created_at),
        "ReadOnlyDBInstanceIds": {"ReadOnlyDBInstanceId": []},
        "MutriORsignle": False,
    }


def _attribute(i: InstanceView) -> dict[str, Any]:
    return {
        **_common(i),
        "CreationTime": to_wire(i.created_at),
        "Port": str(i.port),
        "DBInstanceDiskUsed": str(i.data_bytes),
        "ReadOnlyDBInstanceIds": {"ReadOnlyDBInstanceId": []},
        "ManualBackupEnabled": i.manual_backup_enabled,
    }


def _database(i: InstanceView, d: DatabaseView) -> dict[str, Any]:
    body: dict[str, Any] = {
        "DBName": d.name,
        "DBStatus": d.status,
        "Engine": i.engine,
        "CharacterSetName": d.character_set,
        "DBDescription": "",
        "DBInstanceId": i.id,
        "Accounts": {"AccountPrivilegeInfo": []},
    }
    if family_of(i.engine).reports_collation:
        body["Collate"] = d.collation
    return body


ACTIONS: dict[str, Handler] = {
    "DescribeDBInstances": describe_db_instances,
    "DescribeDBInstanceAttribute": describe_db_instance_attribute,
    "DescribeDatabases": describe_databases,
    "DeleteDBInstance": delete_db_instance,
}
