"""Domain errors: what went wrong in the service's own words. The API layer maps each
class to its Alibaba code, HTTP status and message (``api/errors.py``)."""

from __future__ import annotations


class ServiceError(Exception):
    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or type(self).__name__)
        self.detail = detail


class InvalidValue(ServiceError):
    """A parameter value is out of its set or malformed."""

    def __init__(self, param: str, detail: str = "") -> None:
        super().__init__(detail)
        self.param = param


class UnsupportedBackupMethod(InvalidValue):
    def __init__(self, detail: str = "") -> None:
        super().__init__("BackupMethod", detail)


class UnsupportedBackupType(InvalidValue):
    def __init__(self, detail: str = "") -> None:
        super().__init__("BackupType", detail)


class UnsupportedBackupStrategy(InvalidValue):
    def __init__(self, detail: str = "") -> None:
        super().__init__("BackupStrategy", detail)


class InstanceNotFound(ServiceError):
    pass


class IncorrectInstanceState(ServiceError):
    pass


class BackupJobExists(ServiceError):
    pass


class BackupQuotaExceeded(ServiceError):
    pass


class DatabaseNotFound(ServiceError):
    def __init__(self, names: list[str]) -> None:
        super().__init__(", ".join(names))
        self.names = names


class OperationDenied(ServiceError):
    pass


class BackupNotFound(ServiceError):
    pass


class BackupLocked(ServiceError):
    """The set's StoreStatus is Disabled: it may not be deleted."""


class MissingValue(ServiceError):
    """A parameter the request needs in this combination is absent."""

    def __init__(self, param: str) -> None:
        super().__init__(param)
        self.param = param


class LogBackupOff(ServiceError):
    """A point in time was asked of an instance that keeps no log backups."""


class RestoreTimeUnavailable(ServiceError):
    """The time is outside the restorable window (the detail says which it is)."""


class DatabaseNotInSet(ServiceError):
    def __init__(self, names: list[str]) -> None:
        super().__init__(", ".join(names))
        self.names = names


class DatabaseExists(ServiceError):
    pass


class BackupUnusable(ServiceError):
    """The set exists but cannot be restored (failed, or not available)."""


class InvalidRetentionPeriod(InvalidValue):
    """BackupRetentionPeriod out of 7-730 days."""

    def __init__(self, detail: str = "") -> None:
        super().__init__("BackupRetentionPeriod", detail)


class InvalidBackupTime(InvalidValue):
    """PreferredBackupTime is not a one-hour UTC window ``HH:mmZ-HH:mmZ``."""

    def __init__(self, detail: str = "") -> None:
        super().__init__("PreferredBackupTime", detail)


class InvalidBackupPeriod(InvalidValue):
    """PreferredBackupPeriod names an unknown day, or fewer than two days."""

    def __init__(self, detail: str = "") -> None:
        super().__init__("PreferredBackupPeriod", detail)


class InvalidReleasedKeepPolicy(InvalidValue):
    def __init__(self, detail: str = "") -> None:
        super().__init__("ReleasedKeepPolicy", detail)
