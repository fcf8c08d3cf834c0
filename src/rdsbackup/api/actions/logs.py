"""DescribeBinlogFiles and DescribeLocalAvailableRecoveryTime.

DescribeBinlogFiles' counts are numbers (unlike DescribeBackups'); its ``Checksum`` is
a string (ours: the sha256 of the raw file, where Alibaba gives a CRC64 the SDK
samples render as a lossy number). Download links are empty (Alibaba's "NULL: no
URL"): log files are read back by a point-in-time restore, not served.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rdsbackup.api.errors import ApiError, ErrorCode
from rdsbackup.api.params import Params
from rdsbackup.api.protocol import Call
from rdsbackup.service.logs import LogFileView, LogService, RecoveryView
from rdsbackup.timeutil import WIRE_SECONDS, to_wire

if TYPE_CHECKING:
    from rdsbackup.api.actions import Handler, Services


def _logs(svc: Services) -> LogService:
    assert svc.logs is not None
    return svc.logs


def describe_binlog_files(call: Call, svc: Services) -> dict[str, Any]:
    p = Params(call.params)
    instance_id = p.required("DBInstanceId")
    p.required("StartTime")
    p.required("EndTime")
    start = p.timestamp("StartTime", WIRE_SECONDS, code=ErrorCode.InvalidStartTimeFormat)
    end = p.timestamp("EndTime", WIRE_SECONDS, code=ErrorCode.InvalidEndTimeFormat)
    assert start is not None and end is not None
    if end <= start:
        raise ApiError(ErrorCode.InvalidParameterCombination)
    size = p.integer("PageSize", default=30, minimum=30, maximum=100) or 30
    number = p.page_number(ErrorCode.InvalidPageNumbersMalformed)
    page, total_size = _logs(svc).files(call.principal, instance_id, start, end, number, size)
    return {
        "TotalRecordCount": page.total,
        "PageNumber": number,
        "PageRecordCount": len(page.items),
        "TotalFileSize": total_size,
        "Items": {"BinLogFile": [_file(f, instance_id) for f in page.items]},
    }


def describe_local_available_recovery_time(call: Call, svc: Services) -> dict[str, Any]:
    p = Params(call.params)
    view = _logs(svc).recovery(call.principal, p.required("DBInstanceId"))
    return _recovery(view)


def _file(f: LogFileView, instance_id: str) -> dict[str, Any]:
    return {
        "LogFileName": f.name,
        "LogBeginTime": to_wire(f.begin),
        "LogEndTime": to_wire(f.end),
        "FileSize": f.size,
        "Checksum": f.sha256,
        "DownloadLink": "",
        "IntranetDownloadLink": "",
        "LinkExpiredTime": "",
        "HostInstanceID": instance_id,
        "RemoteStatus": f.status,
        # Extensions:
        "LogFileType": f.kind,
        "Timeline": f.timeline,
        "RawFileSize": f.raw_size,
        "StartPosition": f.start_position,
        "EndPosition": f.end_position,
    }


def _recovery(v: RecoveryView) -> dict[str, Any]:
    return {
        "DBInstanceId": v.instance_id,
        "RecoveryBeginTime": to_wire(v.begin),
        "RecoveryEndTime": to_wire(v.end),
        # Extensions: the log stream's state, and the gaps that split the window.
        "EnableBackupLog": "1" if v.enabled else "0",
        "LogBackupStatus": v.status,
        "LogBackupStatusReason": v.reason,
        "LastLogFile": v.last_file,
        "LastDurableTime": to_wire(v.last_durable_time),
        "LogGaps": {
            "LogGap": [
                {
                    "AfterFile": g.after_file,
                    "BeforeFile": g.before_file,
                    "FromTime": to_wire(g.from_time),
                    "ToTime": to_wire(g.to_time),
                    "Reason": g.reason,
                    "Kind": g.kind,
                }
                for g in v.gaps
            ]
        },
    }


ACTIONS: dict[str, Handler] = {
    "DescribeBinlogFiles": describe_binlog_files,
    "DescribeLocalAvailableRecoveryTime": describe_local_available_recovery_time,
}
