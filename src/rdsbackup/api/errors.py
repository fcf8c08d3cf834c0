"""The one catalogue of error codes: code -> HTTP status and message, and the mapping
from the service's domain errors to those codes.

Messages follow Alibaba's own wording where it is known (see docs/api.md). A message
may carry a detail after the catalogue text; ``SignatureDoesNotMatch`` must end with
``server string to sign is:<sts>`` because aliyun-python-sdk-core splits it on ``:``.
"""

from __future__ import annotations

from dataclasses import dataclass

from rdsbackup.service import errors as domain


@dataclass(frozen=True)
class ErrorSpec:
    status: int
    message: str


CATALOGUE: dict[str, ErrorSpec] = {
    "MissingParameter": ErrorSpec(
        400,
        'The input parameter "{param}" that is mandatory for processing this request is '
        "not supplied.",
    ),
    "InvalidParameter": ErrorSpec(400, 'The specified parameter "{param}" is not valid.'),
    "InvalidBackupMethod.ValueNotSupport": ErrorSpec(
        400, 'The specified parameter "BackupMethod" is not valid.'
    ),
    "BackupType.NotSupport": ErrorSpec(400, "the specified backup type not support"),
    "InvalidStartTime.Format": ErrorSpec(400, "Specified start time is not valid."),
    "InvalidEndTime.Format": ErrorSpec(400, "Specified end time is not valid."),
    "InvalidParameterCombination": ErrorSpec(
        400, "The end time must be greater than the start time"
    ),
    "InvalidPageSize": ErrorSpec(400, "Specified page size is not valid."),
    "InvalidPageNumbers.Malformed": ErrorSpec(400, "Specified page number is not valid."),
    "InvalidAction.NotFound": ErrorSpec(
        404, "Specified api is not found, please check your url and method."
    ),
    "UnsupportedHTTPMethod": ErrorSpec(400, "This http method is not supported."),
    "InvalidVersion": ErrorSpec(400, "Specified parameter Version is not valid."),
    "InvalidAccessKeyId.NotFound": ErrorSpec(404, "Specified access key is not found."),
    "InvalidAccessKeyId.Inactive": ErrorSpec(400, "Specified access key is disabled."),
    "IncompleteSignature": ErrorSpec(
        400, "The request signature does not conform to Aliyun standards."
    ),
    "SignatureDoesNotMatch": ErrorSpec(
        400,
        "Specified signature is not matched with our calculation. server string to sign is:{sts}",
    ),
    "InvalidTimeStamp.Format": ErrorSpec(
        400, "Specified time stamp or date value is not well formatted."
    ),
    "InvalidTimeStamp.Expired": ErrorSpec(400, "Specified time stamp or date value is expired."),
    "SignatureNonceUsed": ErrorSpec(400, "Specified signature nonce was used already."),
    "InvalidDBInstanceId.NotFound": ErrorSpec(
        400, "The DBInstanceId provided does not exist in records."
    ),
    "IncorrectDBInstanceState": ErrorSpec(
        403, "Current DB instance state does not support this operation."
    ),
    "BackupJobExists": ErrorSpec(400, "A backup job already exists in the specified DB instance."),
    "BackupTimesExceeded": ErrorSpec(400, "Exceeding the daily backup times of this DB instance."),
    "InvalidDBName.NotFound": ErrorSpec(
        400, "Specified database name does not exist in this DB instance."
    ),
    "OperationDenied.ApiForbidden": ErrorSpec(403, "operation not permitted."),
    "Forbidden.RAM": ErrorSpec(
        403,
        "User not authorized to operate on the specified resource, or this API doesn't "
        "support RAM.",
    ),
    "InvalidBackupSetID.NotFound": ErrorSpec(404, "Specified backup set ID does not exist."),
    "IncorrectBackupSetState": ErrorSpec(
        403, "Current backup set state does not support this operation."
    ),
    "InvalidBackupSet": ErrorSpec(400, "The specified database does not exist in the backup set."),
    "InvalidDBName.Duplicate": ErrorSpec(
        400, "Specified database name already exists in this DB instance."
    ),
    "InvalidRestoreTime.NoLogBackup": ErrorSpec(
        400, "Point-in-time restore needs log backups, and this instance has none."
    ),
    "InternalError": ErrorSpec(
        500, "The request processing has failed due to some unknown error, exception or failure."
    ),
}


class ApiError(Exception):
    def __init__(self, code: str, detail: str = "", **fields: str) -> None:
        spec = CATALOGUE[code]
        message = spec.message.format(**fields) if fields else spec.message
        if detail:
            message = f"{message} {detail}" if code != "SignatureDoesNotMatch" else message
        super().__init__(message)
        self.code = code
        self.status = spec.status
        self.message = message


_DOMAIN: list[tuple[type[domain.ServiceError], str]] = [
    (domain.UnsupportedBackupMethod, "InvalidBackupMethod.ValueNotSupport"),
    (domain.UnsupportedBackupType, "BackupType.NotSupport"),
    (domain.InvalidValue, "InvalidParameter"),
    (domain.InstanceNotFound, "InvalidDBInstanceId.NotFound"),
    (domain.IncorrectInstanceState, "IncorrectDBInstanceState"),
    (domain.BackupJobExists, "BackupJobExists"),
    (domain.BackupQuotaExceeded, "BackupTimesExceeded"),
    (domain.DatabaseNotFound, "InvalidDBName.NotFound"),
    (domain.OperationDenied, "OperationDenied.ApiForbidden"),
    (domain.BackupNotFound, "InvalidBackupSetID.NotFound"),
    (domain.BackupLocked, "IncorrectBackupSetState"),
    (domain.BackupUnusable, "IncorrectBackupSetState"),
    (domain.DatabaseNotInSet, "InvalidBackupSet"),
    (domain.DatabaseExists, "InvalidDBName.Duplicate"),
    (domain.PointInTimeUnavailable, "InvalidRestoreTime.NoLogBackup"),
    (domain.MissingValue, "MissingParameter"),
]


def from_domain(error: domain.ServiceError) -> ApiError:
    for cls, code in _DOMAIN:
        if not isinstance(error, cls):
            continue
        if code == "InvalidParameter":
            assert isinstance(error, domain.InvalidValue)
            return ApiError(code, error.detail, param=error.param)
        if isinstance(error, domain.MissingValue):
            return ApiError(code, param=error.param)
        # OperationDenied's documented message is exact; its reason goes to the log.
        return ApiError(code, "" if code == "OperationDenied.ApiForbidden" else error.detail)
    return ApiError("InternalError")
