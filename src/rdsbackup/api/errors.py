"""The one catalogue of error codes: code -> HTTP status and message, and the mapping
from the service's domain errors to those codes.

Messages follow Alibaba's own wording where it is known (see docs/api.md). A message
may carry a detail after the catalogue text; ``SignatureDoesNotMatch`` must end with
``server string to sign is:<sts>`` because aliyun-python-sdk-core splits it on ``:``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from rdsbackup.service import errors as domain


class ErrorCode(StrEnum):
    """Every code the API answers with; the values are the wire strings."""

    MissingParameter = "MissingParameter"
    InvalidParameter = "InvalidParameter"
    InvalidBackupMethodValueNotSupport = "InvalidBackupMethod.ValueNotSupport"
    BackupTypeNotSupport = "BackupType.NotSupport"
    InvalidStartTimeFormat = "InvalidStartTime.Format"
    InvalidEndTimeFormat = "InvalidEndTime.Format"
    InvalidParameterCombination = "InvalidParameterCombination"
    InvalidPageSize = "InvalidPageSize"
    InvalidPageNumbersMalformed = "InvalidPageNumbers.Malformed"
    InvalidActionNotFound = "InvalidAction.NotFound"
    UnsupportedHTTPMethod = "UnsupportedHTTPMethod"
    InvalidVersion = "InvalidVersion"
    InvalidAccessKeyIdNotFound = "InvalidAccessKeyId.NotFound"
    InvalidAccessKeyIdInactive = "InvalidAccessKeyId.Inactive"
    IncompleteSignature = "IncompleteSignature"
    SignatureDoesNotMatch = "SignatureDoesNotMatch"
    InvalidTimeStampFormat = "InvalidTimeStamp.Format"
    InvalidTimeStampExpired = "InvalidTimeStamp.Expired"
    SignatureNonceUsed = "SignatureNonceUsed"
    InvalidDBInstanceIdNotFound = "InvalidDBInstanceId.NotFound"
    IncorrectDBInstanceState = "IncorrectDBInstanceState"
    BackupJobExists = "BackupJobExists"
    BackupTimesExceeded = "BackupTimesExceeded"
    InvalidDBNameNotFound = "InvalidDBName.NotFound"
    OperationDeniedApiForbidden = "OperationDenied.ApiForbidden"
    ForbiddenRAM = "Forbidden.RAM"
    InvalidBackupSetIDNotFound = "InvalidBackupSetID.NotFound"
    IncorrectBackupSetState = "IncorrectBackupSetState"
    InvalidBackupSet = "InvalidBackupSet"
    InvalidDBNameDuplicate = "InvalidDBName.Duplicate"
    InvalidBackupLogStatus = "InvalidBackupLogStatus"
    InvalidRestoreTime = "InvalidRestoreTime"
    InvalidRestoreTimeFormat = "InvalidRestoreTime.Format"
    InternalError = "InternalError"
    ForbiddenDownloadLink = "Forbidden.DownloadLink"
    InvalidBackupObjectNotFound = "InvalidBackupObject.NotFound"
    InvalidRange = "InvalidRange"
    ThrottlingUser = "Throttling.User"
    InvalidBackupRetentionPeriodMalformed = "InvalidBackupRetentionPeriod.Malformed"
    InvalidPreferredBackupTimeFormat = "InvalidPreferredBackupTime.Format"
    InvalidPreferredBackupPeriodMalformed = "InvalidPreferredBackupPeriod.Malformed"
    InvalidReleasedKeepPolicyFormat = "InvalidReleasedKeepPolicy.Format"


@dataclass(frozen=True)
class ErrorSpec:
    status: int
    message: str


CATALOGUE: dict[ErrorCode, ErrorSpec] = {
    ErrorCode.MissingParameter: ErrorSpec(
        400,
        'The input parameter "{param}" that is mandatory for processing this request is '
        "not supplied.",
    ),
    ErrorCode.InvalidParameter: ErrorSpec(400, 'The specified parameter "{param}" is not valid.'),
    ErrorCode.InvalidBackupMethodValueNotSupport: ErrorSpec(
        400, 'The specified parameter "BackupMethod" is not valid.'
    ),
    ErrorCode.BackupTypeNotSupport: ErrorSpec(400, "the specified backup type not support"),
    ErrorCode.InvalidStartTimeFormat: ErrorSpec(400, "Specified start time is not valid."),
    ErrorCode.InvalidEndTimeFormat: ErrorSpec(400, "Specified end time is not valid."),
    ErrorCode.InvalidParameterCombination: ErrorSpec(
        400, "The end time must be greater than the start time"
    ),
    ErrorCode.InvalidPageSize: ErrorSpec(400, "Specified page size is not valid."),
    ErrorCode.InvalidPageNumbersMalformed: ErrorSpec(400, "Specified page number is not valid."),
    ErrorCode.InvalidActionNotFound: ErrorSpec(
        404, "Specified api is not found, please check your url and method."
    ),
    ErrorCode.UnsupportedHTTPMethod: ErrorSpec(400, "This http method is not supported."),
    ErrorCode.InvalidVersion: ErrorSpec(400, "Specified parameter Version is not valid."),
    ErrorCode.InvalidAccessKeyIdNotFound: ErrorSpec(404, "Specified access key is not found."),
    ErrorCode.InvalidAccessKeyIdInactive: ErrorSpec(400, "Specified access key is disabled."),
    ErrorCode.IncompleteSignature: ErrorSpec(
        400, "The request signature does not conform to Aliyun standards."
    ),
    ErrorCode.SignatureDoesNotMatch: ErrorSpec(
        400,
        "Specified signature is not matched with our calculation. server string to sign is:{sts}",
    ),
    ErrorCode.InvalidTimeStampFormat: ErrorSpec(
        400, "Specified time stamp or date value is not well formatted."
    ),
    ErrorCode.InvalidTimeStampExpired: ErrorSpec(
        400, "Specified time stamp or date value is expired."
    ),
    ErrorCode.SignatureNonceUsed: ErrorSpec(400, "Specified signature nonce was used already."),
    ErrorCode.InvalidDBInstanceIdNotFound: ErrorSpec(
        400, "The DBInstanceId provided does not exist in records."
    ),
    ErrorCode.IncorrectDBInstanceState: ErrorSpec(
        403, "Current DB instance state does not support this operation."
    ),
    ErrorCode.BackupJobExists: ErrorSpec(
        400, "A backup job already exists in the specified DB instance."
    ),
    ErrorCode.BackupTimesExceeded: ErrorSpec(
        400, "Exceeding the daily backup times of this DB instance."
    ),
    ErrorCode.InvalidDBNameNotFound: ErrorSpec(
        400, "Specified database name does not exist in this DB instance."
    ),
    ErrorCode.OperationDeniedApiForbidden: ErrorSpec(403, "operation not permitted."),
    ErrorCode.ForbiddenRAM: ErrorSpec(
        403,
        "User not authorized to operate on the specified resource, or this API doesn't "
        "support RAM.",
    ),
    ErrorCode.InvalidBackupSetIDNotFound: ErrorSpec(404, "Specified backup set ID does not exist."),
    ErrorCode.IncorrectBackupSetState: ErrorSpec(
        403, "Current backup set state does not support this operation."
    ),
    ErrorCode.InvalidBackupSet: ErrorSpec(
        400, "The specified database does not exist in the backup set."
    ),
    ErrorCode.InvalidDBNameDuplicate: ErrorSpec(
        400, "Specified database name already exists in this DB instance."
    ),
    ErrorCode.InvalidBackupLogStatus: ErrorSpec(
        403, "Current backup log enable status does not support this operation."
    ),
    ErrorCode.InvalidRestoreTime: ErrorSpec(400, "Specified restore time is not valid."),
    ErrorCode.InvalidRestoreTimeFormat: ErrorSpec(400, "Specified restore time is not valid."),
    ErrorCode.ForbiddenDownloadLink: ErrorSpec(403, "The download link is not valid."),
    ErrorCode.InvalidBackupObjectNotFound: ErrorSpec(
        404, "Specified object does not exist in the backup set."
    ),
    ErrorCode.InvalidRange: ErrorSpec(416, "The requested range cannot be satisfied."),
    ErrorCode.ThrottlingUser: ErrorSpec(400, "Request was denied due to user flow control."),
    ErrorCode.InvalidBackupRetentionPeriodMalformed: ErrorSpec(
        400, "The specified backup retention period is invalid."
    ),
    ErrorCode.InvalidPreferredBackupTimeFormat: ErrorSpec(
        400, "Specified preferred backup time is not valid."
    ),
    ErrorCode.InvalidPreferredBackupPeriodMalformed: ErrorSpec(
        400, "Specified backup period is not valid."
    ),
    ErrorCode.InvalidReleasedKeepPolicyFormat: ErrorSpec(
        400, "Specified Released Keep Policy is not valid."
    ),
    ErrorCode.InternalError: ErrorSpec(
        500, "The request processing has failed due to some unknown error, exception or failure."
    ),
}


class ApiError(Exception):
    """``fields`` fill the message's placeholders; one not given renders as ``?``, so a
    message never shows a raw ``{...}`` (every raise site passes what its code needs)."""

    def __init__(self, code: ErrorCode, detail: str = "", **fields: str) -> None:
        spec = CATALOGUE[code]
        message = spec.message.format_map(_Fields(fields))
        if detail and code != ErrorCode.SignatureDoesNotMatch:
            message = f"{message} {detail}"
        super().__init__(message)
        self.code = code
        self.status = spec.status
        self.message = message


class _Fields(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "?"


def invalid(name: str, detail: str = "") -> ApiError:
    return ApiError(ErrorCode.InvalidParameter, detail, param=name)


_DOMAIN: list[tuple[type[domain.ServiceError], ErrorCode]] = [
    (domain.UnsupportedBackupMethod, ErrorCode.InvalidBackupMethodValueNotSupport),
    (domain.UnsupportedBackupType, ErrorCode.BackupTypeNotSupport),
    (domain.InvalidRetentionPeriod, ErrorCode.InvalidBackupRetentionPeriodMalformed),
    (domain.InvalidBackupTime, ErrorCode.InvalidPreferredBackupTimeFormat),
    (domain.InvalidBackupPeriod, ErrorCode.InvalidPreferredBackupPeriodMalformed),
    (domain.InvalidReleasedKeepPolicy, ErrorCode.InvalidReleasedKeepPolicyFormat),
    (domain.InvalidValue, ErrorCode.InvalidParameter),
    (domain.InstanceNotFound, ErrorCode.InvalidDBInstanceIdNotFound),
    (domain.IncorrectInstanceState, ErrorCode.IncorrectDBInstanceState),
    (domain.BackupJobExists, ErrorCode.BackupJobExists),
    (domain.BackupQuotaExceeded, ErrorCode.BackupTimesExceeded),
    (domain.DatabaseNotFound, ErrorCode.InvalidDBNameNotFound),
    (domain.OperationDenied, ErrorCode.OperationDeniedApiForbidden),
    (domain.BackupNotFound, ErrorCode.InvalidBackupSetIDNotFound),
    (domain.BackupLocked, ErrorCode.IncorrectBackupSetState),
    (domain.BackupUnusable, ErrorCode.IncorrectBackupSetState),
    (domain.DatabaseNotInSet, ErrorCode.InvalidBackupSet),
    (domain.DatabaseExists, ErrorCode.InvalidDBNameDuplicate),
    (domain.LogBackupOff, ErrorCode.InvalidBackupLogStatus),
    (domain.RestoreTimeUnavailable, ErrorCode.InvalidRestoreTime),
    (domain.MissingValue, ErrorCode.MissingParameter),
]


def from_domain(error: domain.ServiceError) -> ApiError:
    for cls, code in _DOMAIN:
        if not isinstance(error, cls):
            continue
        if code == ErrorCode.InvalidParameter:
            assert isinstance(error, domain.InvalidValue)
            return ApiError(code, error.detail, param=error.param)
        if isinstance(error, domain.MissingValue):
            return ApiError(code, param=error.param)
        # OperationDenied's documented message is exact; its reason goes to the log.
        return ApiError(code, "" if code == ErrorCode.OperationDeniedApiForbidden else error.detail)
    return ApiError(ErrorCode.InternalError)
