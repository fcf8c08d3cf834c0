"""The states and modes the catalog stores and the API answers, as enums.

The values are the Alibaba RDS OpenAPI (2014-08-15) words, so a member is the very string
a client reads (``BackupStatus``, ``DBInstanceStatus`` ...); members are ``StrEnum``s,
equal to those strings, and the catalog's columns stay plain strings. Values marked
*extension* are this service's own (RDS has no such state).

A leaf module: catalog, service, jobs, instances and api may all import it.
"""

from __future__ import annotations

import enum


class JobStatus(enum.StrEnum):
    """A backup job's ``BackupStatus`` and ``BackupProgressStatus`` (DescribeBackupTasks)."""

    NO_START = "NoStart"
    CHECKING = "Checking"
    PREPARING = "Preparing"
    WAITING = "Waiting"
    UPLOADING = "Uploading"
    FINISHED = "Finished"
    FAILED = "Failed"


JOB_PROGRESSING = (JobStatus.CHECKING, JobStatus.PREPARING, JobStatus.WAITING, JobStatus.UPLOADING)
"""A running job: DescribeBackupTasks ``BackupJobStatus=Progressing``."""
JOB_UNFINISHED = (JobStatus.NO_START, *JOB_PROGRESSING)


class BackupStatus(enum.StrEnum):
    """A backup set's ``BackupStatus`` (DescribeBackups)."""

    SUCCESS = "Success"
    FAILED = "Failed"


class BackupMode(enum.StrEnum):
    """A set's ``BackupMode`` (DescribeBackups) and a job's ``JobMode``
    (DescribeBackupTasks): the same two words."""

    AUTOMATED = "Automated"
    MANUAL = "Manual"


class TaskAction(enum.StrEnum):
    """A backup job's ``TaskAction`` (DescribeBackupTasks)."""

    TEMP = "TempBackupTask"
    """An ad hoc (manual) backup."""
    NORMAL = "NormalBackupTask"


class BackupInitiator(enum.StrEnum):
    """A set's ``BackupInitiator`` (DescribeBackups)."""

    USER = "User"
    SYSTEM = "System"


class StoreStatus(enum.StrEnum):
    """A set's ``StoreStatus`` (DescribeBackups): only Enabled sets may be deleted."""

    ENABLED = "Enabled"
    DISABLED = "Disabled"


class MetaStatus(enum.StrEnum):
    """A set's ``MetaStatus`` (DescribeBackups): whether single databases can be restored
    from it. ``EMPTY`` is what a Failed set says. (RDS also answers an empty string.)"""

    OK = "OK"
    LARGE = "LARGE"
    EMPTY = "EMPTY"


class VerifyStatus(enum.StrEnum):
    """A set's ``VerifyStatus`` (extension, VerifyBackup); empty until verified."""

    PASSED = "Passed"
    FAILED = "Failed"


class FingerprintSource(enum.StrEnum):
    """A set's ``FingerprintSource`` (extension); empty while it has no fingerprints."""

    BACKUP = "Backup"
    """Taken in the backup's own snapshot."""
    VERIFY = "Verify"
    """Recorded by the set's first successful verification."""


class InstanceStatus(enum.StrEnum):
    """An instance's ``DBInstanceStatus`` (DescribeDBInstances)."""

    CREATING = "Creating"
    RUNNING = "Running"
    REBOOTING = "Rebooting"
    DELETING = "Deleting"
    UNAVAILABLE = "Unavailable"
    """Extension: the server did not answer the last probe."""
    STOPPED = "Stopped"
    """Extension: a local server the operator stopped (``rdsbackup instance stop``)."""
    FAILED = "Failed"
    """Extension: a clone whose restore failed (RDS releases such instances)."""
    DELETED = "Deleted"
    """Extension: released (DeleteDBInstance), kept for its retained backup sets and
    invisible to the API."""


class LockMode(enum.StrEnum):
    """An instance's ``LockMode`` (DescribeDBInstanceAttribute); RDS has more lock words,
    these are the ones this service sets."""

    UNLOCK = "Unlock"
    MANUAL_LOCK = "ManualLock"


class DatabaseStatus(enum.StrEnum):
    """A database's ``DBStatus`` (DescribeDatabases)."""

    CREATING = "Creating"
    RUNNING = "Running"
    DELETING = "Deleting"


class RestoreStatus(enum.StrEnum):
    """A restore task's status (extension: DescribeRestoreTasks' ``Status``)."""

    PENDING = "Pending"
    RUNNING = "Running"
    FINISHED = "Finished"
    FAILED = "Failed"


RESTORE_ENDED = (RestoreStatus.FINISHED, RestoreStatus.FAILED)


class RestoreKind(enum.StrEnum):
    """What a restore task does (catalog only, never on the wire)."""

    CLONE = "clone"
    """CloneDBInstance: a new instance from a set."""
    DATABASE = "database"
    """RestoreDatabase: one database into a running instance."""
    VERIFY = "verify"
    """VerifyBackup: restore into a scratch server and compare fingerprints."""


class KeyStatus(enum.StrEnum):
    """An access key's status (as RAM's ``Status`` of an AccessKey)."""

    ACTIVE = "Active"
    INACTIVE = "Inactive"


class ScheduleStatus(enum.StrEnum):
    """What the scheduler decided for one slot of a backup policy (extension:
    ``scheduled_backups``, ``rdsbackup schedule list``)."""

    PENDING = "Pending"
    """Claimed; its job is being created (a crash here is resumed at the next tick)."""
    STARTED = "Started"
    """Its automated job was created inside the slot."""
    CAUGHT_UP = "CaughtUp"
    """The one backup started after the scheduler was not running when slots were due."""
    DEFERRED = "Deferred"
    """Another job of the instance was unfinished; retried until the slot's deadline."""
    SKIPPED = "Skipped"
    """Not started: the instance was not Running, or the rules refused (reason says)."""
    MISSED = "Missed"
    """The deadline passed while it was deferred (reason says why)."""


SCHEDULE_OPEN = (ScheduleStatus.PENDING, ScheduleStatus.DEFERRED)
"""Decisions the scheduler still works on."""


class LogGapKind(enum.StrEnum):
    """Why stored logs do not run on (``log_gaps.kind``); no restore crosses a gap."""

    MISSING = "Missing"
    """Files between two stored ones were never stored (a sequence jump)."""
    REFUSED = "Refused"
    """A file came with a stored file's name and other content: the stored one is
    kept, and base sets taken later whose position names that file cannot use it."""
    DIVERGED = "Diverged"
    """A file numbered as the successor does not continue the stored one (its GTID
    state or cluster differs): the server's log history restarted."""


class LogStreamStatus(enum.StrEnum):
    """An instance's log backup (extension: DescribeLocalAvailableRecoveryTime's
    ``LogBackupStatus``)."""

    STREAMING = "Streaming"
    RESTARTING = "Restarting"
    """The streaming tool ended (the reason says why); it is started again."""
    BROKEN = "Broken"
    """A gap since the newest base set: times after it need a new backup set."""
    STOPPED = "Stopped"
    """Log backup is off (or the instance is not Running)."""
