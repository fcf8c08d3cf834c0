"""The state enums carry the Alibaba words clients match on (Terraform polls
``BackupStatus == "Finished"``), and the job states split cleanly into unfinished ones
and the two the one-unfinished-job index leaves out."""

from __future__ import annotations

from rdsbackup.catalog.models import UNFINISHED
from rdsbackup.states import (
    JOB_PROGRESSING,
    JOB_UNFINISHED,
    BackupMode,
    BackupStatus,
    InstanceStatus,
    JobStatus,
    MetaStatus,
    StoreStatus,
    TaskAction,
)


def test_values_are_the_documented_api_words() -> None:
    assert [s.value for s in JobStatus] == [
        "NoStart",
        "Checking",
        "Preparing",
        "Waiting",
        "Uploading",
        "Finished",
        "Failed",
    ]
    assert {s.value for s in BackupStatus} == {"Success", "Failed"}
    assert {s.value for s in BackupMode} == {"Automated", "Manual"}
    assert {s.value for s in TaskAction} == {"TempBackupTask", "NormalBackupTask"}
    assert {s.value for s in StoreStatus} == {"Enabled", "Disabled"}
    assert {s.value for s in MetaStatus} == {"OK", "LARGE", "EMPTY"}
    assert InstanceStatus("Running") is InstanceStatus.RUNNING
    assert f"{InstanceStatus.RUNNING}" == str(InstanceStatus.RUNNING) == "Running"


def test_every_job_state_is_unfinished_or_excluded_by_the_unique_index() -> None:
    ended = set(JobStatus) - set(JOB_UNFINISHED)
    assert ended == {JobStatus.FINISHED, JobStatus.FAILED}
    assert UNFINISHED == "status NOT IN ('Finished', 'Failed')"
    assert JobStatus.NO_START not in JOB_PROGRESSING
