"""The scheduler of automated backups on the memory engine, with a clock the tests move:
a simulated week of policies over several instances, downtime, a manual job in the
way, two schedulers on one catalog, a clock set back, instances not Running, and the
20-a-day rule. Jobs the scheduler creates are run at once by the rig's runner (the
Recorder dispatcher only records them)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from rdsbackup.catalog.db import Catalog
from rdsbackup.catalog.models import BackupJob, BackupSet, Instance, ScheduledBackup, policy_for
from rdsbackup.clock import ManualClock
from rdsbackup.config import Settings
from rdsbackup.engines.memory import MemoryServer
from rdsbackup.instances.servers import free_port
from rdsbackup.schedule import spread_offset
from rdsbackup.service import errors
from rdsbackup.service.auth import Principal
from rdsbackup.service.backups import CreateBackupRequest
from rdsbackup.service.lease import NamedLease
from rdsbackup.service.scheduler import LEASE_NAME, TOKEN_PREFIX, Scheduler
from rdsbackup.states import BackupMode, ScheduleStatus
from rdsbackup.testing import MemoryRig, memory_rig, memory_service

MONDAY = datetime(2026, 3, 2)  # a Monday
STEP = timedelta(minutes=5)
EVERY_DAY = "Monday,Tuesday,Wednesday,Thursday,Friday,Saturday,Sunday"
F, INC = "FullBackup", "IncrementalBackup"


def at(day: int, hh: int, mm: int) -> datetime:
    """``day`` days after MONDAY (-1: the Sunday before), at hh:mm UTC."""
    return MONDAY + timedelta(days=day, hours=hh, minutes=mm)


@dataclass
class Sim:
    rig: MemoryRig
    clock: ManualClock
    scheduler: Scheduler

    @property
    def catalog(self) -> Catalog:
        return self.rig.catalog

    def add(self, instance_id: str, engine: str = "MariaDB", **policy: object) -> Principal:
        server = MemoryServer()
        server.create_database("shop", {"orders": [[1, "pen"], [2, "ink"]]})
        _, who = self.rig.add_instance(server, engine=engine, instance_id=instance_id)
        if policy:
            with self.catalog.write() as s:
                row = policy_for(s, instance_id)
                for name, value in policy.items():
                    setattr(row, name, value)
                s.add(row)
        return who

    def scheduler_as(self, owner: str, lease: str = LEASE_NAME) -> Scheduler:
        return Scheduler(
            self.catalog,
            self.rig.service,
            NamedLease(self.catalog, lease, owner, 600, self.clock),
            self.clock,
        )

    def tick(self, scheduler: Scheduler | None = None) -> list[int]:
        started = (scheduler or self.scheduler).tick()
        for job_id in started:
            self.rig.runner.run(job_id)
        return started

    def run(self, until: datetime, step: timedelta = STEP) -> None:
        while self.clock.now() < until:
            self.clock.advance(step)
            self.tick()

    def started(self) -> list[tuple[str, datetime, datetime, str]]:
        """(instance, slot, when it was started, job kind), for every started slot."""
        with self.catalog.read() as s:
            rows = s.execute(
                select(ScheduledBackup, BackupJob)
                .join(BackupJob, BackupJob.id == ScheduledBackup.job_id)
                .order_by(ScheduledBackup.decided_at, ScheduledBackup.instance_id)
            ).all()
            return [(d.instance_id, d.slot_time, d.decided_at, j.kind) for d, j in rows]

    def decisions(self, instance_id: str) -> list[tuple[datetime, str, str]]:
        return [(d.slot_time, d.status, d.reason) for d in self.scheduler.decisions(instance_id)]

    def jobs(self, instance_id: str) -> list[BackupJob]:
        with self.catalog.read() as s:
            query = select(BackupJob).where(BackupJob.instance_id == instance_id)
            return list(s.scalars(query.order_by(BackupJob.id)))

    def set_status(self, instance_id: str, status: str, reason: str = "") -> None:
        with self.catalog.write() as s:
            s.execute(
                update(Instance)
                .where(Instance.id == instance_id)
                .values(status=status, status_reason=reason)
            )


def make_sim(catalog: Catalog, start: datetime) -> Sim:
    rig = memory_rig(catalog)
    clock = ManualClock(start)
    lease = NamedLease(catalog, LEASE_NAME, "node-a", 120, clock)
    return Sim(rig, clock, Scheduler(catalog, rig.service, lease, clock))


@pytest.fixture
def sqlite_catalog(tmp_path: Path) -> Iterator[Catalog]:
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    yield catalog
    catalog.dispose()


@pytest.fixture
def sim(sqlite_catalog: Catalog) -> Sim:
    return make_sim(sqlite_catalog, MONDAY)


# -- a week ---------------------------------------------------------------------------------


def test_a_simulated_week_starts_exactly_the_policies_backups(sim: Sim) -> None:
    """Four instances, four policies, a week of ticks every 5 minutes (spread offsets:
    alpha :30, bravo :17, charlie :02, delta :07 into their windows)."""
    sim.add(
        "rm-alpha",
        preferred_backup_time="02:00Z-03:00Z",
        preferred_backup_period="Monday,Thursday",
        enable_increment_data_backup=True,
        inc_backup_interval=720,
        backup_retention_period=30,
    )
    sim.add("rm-bravo")  # no policy row: the defaults, 02:00Z-03:00Z Tue/Thu/Sat
    sim.add(
        "rm-charlie",
        preferred_backup_time="10:00Z-11:00Z",
        preferred_backup_period="Wednesday,Sunday",
        backup_interval="240",
    )
    sim.add(
        "pgm-delta",
        engine="PostgreSQL",
        preferred_backup_time="23:00Z-24:00Z",
        preferred_backup_period="Monday,Friday",
        backup_method="Snapshot",
        enable_increment_data_backup=True,
        inc_backup_interval=720,
    )
    sim.run(MONDAY + timedelta(days=7))

    alpha_incrementals = [
        (at(d, h, 30), at(d, h, 30)) for d in range(7) for h in (2, 14) if (d, h) not in _AF
    ]
    expected = sorted(
        # The first tick (Monday 00:05) finds slots still open: each starts then; alpha's
        # and delta's incremental slots have no full set yet, so they take a full.
        [("rm-alpha", at(-1, 14, 30), at(0, 0, 5), F)]
        + [("rm-charlie", at(-1, 22, 2), at(0, 0, 5), F)]
        + [("pgm-delta", at(-1, 23, 7), at(0, 0, 5), F)]
        + [("rm-alpha", slot, when, F) for slot, when in _alpha_fulls()]
        + [("rm-alpha", slot, when, INC) for slot, when in alpha_incrementals]
        + [("rm-bravo", at(d, 2, 17), at(d, 2, 20), F) for d in (1, 3, 5)]
        + [("rm-charlie", at(d, h, 2), at(d, h, 5), F) for d in (2, 6) for h in (10, 14, 18, 22)]
        + [("pgm-delta", at(d, 23, 7), at(d, 23, 10), F) for d in (0, 4)],
        key=lambda r: (r[2], r[0]),
    )
    assert sim.started() == expected

    # Delta's engine cannot build Snapshot incrementals: those slots are skipped, saying so.
    delta = sim.decisions("pgm-delta")
    skipped = [(slot, reason) for slot, status, reason in delta if status == "Skipped"]
    assert [slot for slot, _ in skipped] == [
        at(d, h, 7) for d in range(7) for h in (11, 23) if (d, h) not in ((0, 23), (4, 23))
    ]
    assert all("only Physical sets can be incremental" in r for _, r in skipped)
    fallback = dict((slot, reason) for slot, _, reason in sim.decisions("rm-alpha"))
    assert "a full backup instead" in fallback[at(-1, 14, 30)]

    # The jobs are Alibaba's automated ones, their sets kept as the policy says.
    jobs = [j for i in ("rm-alpha", "rm-bravo", "rm-charlie", "pgm-delta") for j in sim.jobs(i)]
    assert len(jobs) == len(expected)
    assert {(j.job_mode, j.task_action, j.status) for j in jobs} == {
        ("Automated", "NormalBackupTask", "Finished")
    }
    assert {j.method for j in sim.jobs("pgm-delta")} == {"Snapshot"}
    with sim.catalog.read() as s:
        sets = list(s.scalars(select(BackupSet).where(BackupSet.instance_id == "rm-alpha")))
    assert {(b.mode, b.initiator, b.retention_days) for b in sets} == {("Automated", "System", 30)}
    chain = {b.id: b.parent_id for b in sets}
    assert sum(parent is None for parent in chain.values()) == 3  # one chain per full
    assert all(p is None or p in chain for p in chain.values())


_AF = ((0, 2), (3, 2))
"""Alpha's full slots (Monday and Thursday 02:30)."""


def _alpha_fulls() -> list[tuple[datetime, datetime]]:
    return [(at(d, h, 30), at(d, h, 30)) for d, h in _AF]


def test_instances_sharing_a_window_start_at_different_minutes(sim: Sim) -> None:
    ids = ["rm-alpha", "rm-bravo", "rm-charlie", "rm-echo", "rm-foxtrot", "rm-golf"]
    for instance_id in ids:
        sim.add(instance_id, preferred_backup_period=EVERY_DAY)
    sim.run(at(0, 3, 0), step=timedelta(minutes=1))
    started = {instance: when for instance, _, when, _ in sim.started()}
    assert sorted(started) == sorted(ids)
    assert len(set(started.values())) == len(ids)  # no two at once
    assert all(at(0, 2, 0) <= when < at(0, 2, 45) for when in started.values())


def test_backup_interval_adds_fulls_until_the_day_ends(sim: Sim) -> None:
    sim.add(
        "rm-charlie",
        preferred_backup_time="20:00Z-21:00Z",
        preferred_backup_period="Monday,Tuesday",
        backup_interval="60",
    )
    sim.run(at(2, 0, 0))
    slots = [slot for _, slot, _, _ in sim.started()]
    assert slots == [at(d, h, 2) for d in (0, 1) for h in (20, 21, 22, 23)]


# -- downtime ---------------------------------------------------------------------------------


def test_downtime_catches_up_once_then_follows_the_policy(sim: Sim) -> None:
    sim.add("rm-bravo", preferred_backup_period=EVERY_DAY)
    sim.run(at(1, 12, 0))
    assert [slot for _, slot, _, _ in sim.started()] == [at(0, 2, 17), at(1, 2, 17)]

    sim.clock.set(at(4, 12, 0))  # down from Tuesday noon to Friday noon
    assert len(sim.tick()) == 1
    sim.run(at(5, 0, 0))  # the rest of Friday: nothing more
    caught = sim.scheduler.decisions("rm-bravo")[-1]
    assert (caught.slot_time, caught.status, caught.catch_up) == (
        at(4, 2, 17),
        ScheduleStatus.CAUGHT_UP,
        True,
    )
    assert caught.reason == "catch-up: 3 slot(s) since 2026-03-04T02:17Z missed"
    assert caught.decided_at == at(4, 12, 0) and caught.kind == F
    assert len(sim.jobs("rm-bravo")) == 3

    sim.run(at(5, 3, 0))  # Saturday's window: the normal slot
    assert sim.started()[-1][1:] == (at(5, 2, 17), at(5, 2, 20), F)
    assert len(sim.jobs("rm-bravo")) == 4


def test_after_downtime_across_a_full_slot_the_next_backup_is_a_full(sim: Sim) -> None:
    sim.add(
        "rm-alpha",
        preferred_backup_period="Monday,Thursday",
        enable_increment_data_backup=True,
        inc_backup_interval=360,
    )
    sim.run(at(0, 3, 0))
    sim.clock.set(at(3, 9, 0))  # down across Thursday's full at 02:30
    sim.tick()
    last = sim.scheduler.decisions("rm-alpha")[-1]
    assert (last.slot_time, last.status, last.kind) == (at(3, 8, 30), "Started", F)
    assert last.reason == "12 earlier slot(s) missed while no scheduler ran"
    sim.clock.set(at(3, 14, 30))
    sim.tick()
    assert sim.scheduler.decisions("rm-alpha")[-1].kind == INC  # then the chain goes on


def test_back_inside_an_open_window_it_starts_that_slot_not_a_catch_up(sim: Sim) -> None:
    sim.add("rm-bravo", preferred_backup_period=EVERY_DAY)
    sim.run(at(0, 3, 0))
    sim.clock.set(at(3, 2, 40))  # down until Thursday, inside its window
    sim.tick()
    last = sim.scheduler.decisions("rm-bravo")[-1]
    assert (last.slot_time, last.status, last.catch_up) == (at(3, 2, 17), "Started", False)
    assert last.reason == "2 earlier slot(s) missed while no scheduler ran"
    sim.run(at(4, 0, 0))
    assert len(sim.jobs("rm-bravo")) == 2


def test_a_first_start_fires_only_what_is_still_open(sim: Sim) -> None:
    sim.clock.set(at(0, 12, 0))
    sim.add("rm-bravo", preferred_backup_period=EVERY_DAY)
    sim.tick()  # Monday's slot closed at 03:00, before this scheduler knew the instance
    assert sim.jobs("rm-bravo") == []
    sim.run(at(1, 3, 0))
    assert [slot for _, slot, _, _ in sim.started()] == [at(1, 2, 17)]


def test_a_policy_changed_after_its_new_slot_closed_does_not_catch_up(sim: Sim) -> None:
    sim.add("rm-bravo", preferred_backup_period=EVERY_DAY)
    sim.run(at(1, 12, 0))  # Monday's and Tuesday's 02:17 backups
    with sim.catalog.write() as s:  # at Tuesday noon, the window moves to 10:00Z
        policy = policy_for(s, "rm-bravo")
        policy.preferred_backup_time = "10:00Z-11:00Z"
        policy.updated_at = at(1, 12, 0)
    sim.run(at(2, 12, 0))
    assert [slot for _, slot, _, _ in sim.started()] == [
        at(0, 2, 17),
        at(1, 2, 17),
        at(2, 10, 17),  # not Tuesday's 10:17, closed before the change
    ]


def test_the_jobs_take_the_policys_method_compression_and_retention(sim: Sim) -> None:
    sim.add(
        "rm-bravo",
        preferred_backup_period=EVERY_DAY,
        backup_method="Snapshot",
        compress_type="1",
        backup_retention_period=45,
    )
    sim.add("rm-alpha", preferred_backup_period=EVERY_DAY, compress_type="8")
    sim.run(at(0, 3, 0))
    [snapshot], [physical] = sim.jobs("rm-bravo"), sim.jobs("rm-alpha")
    assert (snapshot.method, snapshot.compression, snapshot.retention_days) == (
        "Snapshot",
        "gzip",
        45,
    )
    assert (physical.method, physical.compression, physical.retention_days) == (
        "Physical",
        "zstd",
        7,
    )


# -- a job in the way ---------------------------------------------------------------------


def test_a_slot_blocked_by_a_manual_job_starts_when_it_ends(sim: Sim) -> None:
    who = sim.add("rm-bravo", preferred_backup_period=EVERY_DAY)
    sim.run(at(0, 2, 10))
    manual = sim.rig.service.create_backup(who, CreateBackupRequest("rm-bravo"))
    sim.run(at(0, 2, 30))
    assert sim.decisions("rm-bravo") == [
        (at(0, 2, 17), "Deferred", f"backup job {manual} (Manual) was not finished")
    ]
    sim.rig.runner.run(manual)  # the manual job ends
    sim.run(at(0, 2, 35))
    assert sim.decisions("rm-bravo") == [
        (at(0, 2, 17), "Started", f"started late: backup job {manual} (Manual) was not finished")
    ]
    assert [(j.job_mode, j.status) for j in sim.jobs("rm-bravo")] == [
        ("Manual", "Finished"),
        ("Automated", "Finished"),
    ]


def test_a_slot_blocked_past_its_window_is_missed_with_the_reason(sim: Sim) -> None:
    who = sim.add("rm-bravo", preferred_backup_period=EVERY_DAY)
    sim.run(at(0, 2, 10))
    manual = sim.rig.service.create_backup(who, CreateBackupRequest("rm-bravo"))
    sim.run(at(0, 3, 5))  # the window closes at 03:00 with the job unfinished
    assert sim.decisions("rm-bravo") == [
        (
            at(0, 2, 17),
            "Missed",
            f"its deadline passed: backup job {manual} (Manual) was not finished",
        )
    ]
    sim.rig.runner.run(manual)
    sim.run(at(1, 3, 0))  # no catch-up for a slot that was decided; the next one runs
    assert [(slot, status) for slot, status, _ in sim.decisions("rm-bravo")] == [
        (at(0, 2, 17), "Missed"),
        (at(1, 2, 17), "Started"),
    ]


def test_a_job_created_before_a_crash_is_adopted_not_doubled(sim: Sim) -> None:
    """A scheduler died between creating a slot's job and recording it: the slot's row
    is Pending; the next tick finds the job by the slot's ClientToken."""
    who = sim.add("rm-bravo", preferred_backup_period=EVERY_DAY)
    sim.clock.set(at(0, 2, 20))
    with sim.catalog.write() as s:
        row = ScheduledBackup(
            instance_id="rm-bravo",
            slot_time=at(0, 2, 17),
            deadline=at(0, 3, 0),
            kind=F,
            status="Pending",
            decided_at=at(0, 2, 17),
        )
        s.add(row)
        s.flush()
        token = f"{TOKEN_PREFIX}{row.id}"
    job_id = sim.rig.service.create_backup(
        who, CreateBackupRequest("rm-bravo", client_token=token, job_mode=BackupMode.AUTOMATED)
    )
    sim.run(at(0, 3, 0))
    [decision] = sim.scheduler.decisions("rm-bravo")
    assert (decision.status, decision.job_id) == ("Started", job_id)
    assert [j.id for j in sim.jobs("rm-bravo")] == [job_id]


# -- two schedulers, the clock ----------------------------------------------------------------


def test_two_schedulers_on_one_catalog_never_both_fire(catalog: Catalog) -> None:
    """The lease: one of them works; the other takes over once it has expired."""
    sim = make_sim(catalog, MONDAY)
    sim.add("rm-bravo", preferred_backup_period=EVERY_DAY)
    a, b = sim.scheduler_as("node-a"), sim.scheduler_as("node-b")
    sim.clock.advance(STEP)
    sim.tick(a)  # a takes the lease
    while sim.clock.now() < at(1, 3, 0):
        sim.clock.advance(STEP)
        assert sim.tick(b) == []  # a holds the lease, even when a slot is due
        sim.tick(a)
    assert [slot for _, slot, _, _ in sim.started()] == [at(0, 2, 17), at(1, 2, 17)]

    # a ticks last at 02:10 and dies without releasing: b waits out the lease (10 min)
    sim.clock.set(at(2, 2, 10))
    sim.tick(a)
    sim.clock.set(at(2, 2, 19))
    assert sim.tick(b) == []  # the 02:17 slot is due, but a's lease runs until 02:20
    sim.clock.set(at(2, 2, 20))
    assert len(sim.tick(b)) == 1
    assert sim.tick(a) == []  # and a, come back, does not
    assert len(sim.jobs("rm-bravo")) == 3


def test_the_slot_key_holds_even_if_two_schedulers_tick_at_once(catalog: Catalog) -> None:
    """Without the lease between them (two lease names), eight schedulers ticking at the
    same instant still decide each slot once and start one job."""
    sim = make_sim(catalog, at(0, 2, 20))
    sim.add("rm-bravo", preferred_backup_period=EVERY_DAY)
    schedulers = [sim.scheduler_as(f"node-{n}", lease=f"lease-{n}") for n in range(8)]
    barrier = threading.Barrier(len(schedulers))
    started: list[int] = []

    def tick(scheduler: Scheduler) -> None:
        barrier.wait()
        started.extend(scheduler.tick())

    threads = [threading.Thread(target=tick, args=(s,)) for s in schedulers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(started)) == 1  # (two may both have seen the Pending row: same job)
    assert [d.status for d in sim.scheduler.decisions("rm-bravo")] == ["Started"]
    assert len(sim.jobs("rm-bravo")) == 1


def test_a_clock_set_back_does_not_fire_a_decided_window_again(sim: Sim) -> None:
    sim.add("rm-bravo", preferred_backup_period=EVERY_DAY)
    sim.run(at(0, 3, 0))
    assert len(sim.jobs("rm-bravo")) == 1
    sim.clock.set(at(0, 1, 0))  # back two hours, through the window again
    sim.run(at(0, 3, 0))
    sim.clock.set(at(-1, 1, 0))  # back a day: Sunday's window was never decided
    sim.run(at(0, 3, 0))
    assert len(sim.jobs("rm-bravo")) == 1
    assert [slot for slot, _, _ in sim.decisions("rm-bravo")] == [at(0, 2, 17)]
    sim.run(at(1, 3, 0))
    assert len(sim.jobs("rm-bravo")) == 2


# -- instances not Running ------------------------------------------------------------------


def test_an_instance_not_running_is_skipped_and_recorded(sim: Sim) -> None:
    sim.add("rm-bravo", preferred_backup_period=EVERY_DAY)
    sim.set_status("rm-bravo", "Stopped")
    sim.run(at(0, 3, 0))
    down = "Can't connect to server on '127.0.0.1'"
    sim.set_status("rm-bravo", "Unavailable", down)
    sim.run(at(1, 3, 0))  # unavailable all through Tuesday's window
    sim.run(at(2, 2, 30))  # and on Wednesday until 02:30, then it answers again
    sim.set_status("rm-bravo", "Running")
    sim.run(at(2, 3, 0))
    sim.set_status("rm-bravo", "Deleted")
    sim.run(at(5, 3, 0))
    assert sim.decisions("rm-bravo") == [
        (at(0, 2, 17), "Skipped", "the instance was Stopped"),
        (at(1, 2, 17), "Missed", f"its deadline passed: the instance was Unavailable: {down}"),
        (at(2, 2, 17), "Started", f"started late: the instance was Unavailable: {down}"),
        (at(3, 2, 17), "Skipped", "the instance was released"),  # once, not every day
    ]
    assert len(sim.jobs("rm-bravo")) == 1


def test_a_read_only_instance_is_skipped_with_the_rules_reason(sim: Sim) -> None:
    sim.add("rm-bravo", preferred_backup_period=EVERY_DAY)
    with sim.catalog.write() as s:
        s.execute(update(Instance).where(Instance.id == "rm-bravo").values(read_only=True))
    sim.run(at(0, 3, 0))
    assert sim.decisions("rm-bravo") == [
        (at(0, 2, 17), "Skipped", "OperationDenied: the instance is read-only")
    ]


def test_automated_backups_run_where_on_demand_ones_are_disabled(sim: Sim) -> None:
    sim.add("rm-bravo", preferred_backup_period=EVERY_DAY)
    with sim.catalog.write() as s:
        s.execute(
            update(Instance).where(Instance.id == "rm-bravo").values(manual_backup_enabled=False)
        )
    sim.run(at(0, 3, 0))
    assert [status for _, status, _ in sim.decisions("rm-bravo")] == ["Started"]


# -- the 20-a-day limit -----------------------------------------------------------------------


def test_automated_jobs_neither_count_toward_nor_meet_the_daily_limit(sim: Sim) -> None:
    """The cap is CreateBackup's: 20 manual jobs a day, automated ones aside."""
    who = sim.add(
        "rm-charlie",
        preferred_backup_time="00:00Z-01:00Z",
        preferred_backup_period=EVERY_DAY,
        backup_interval="15",
    )
    sim.run(at(0, 6, 0))  # 00:02 and every 15 minutes: 24 automated jobs
    automated = [j for j in sim.jobs("rm-charlie") if j.job_mode == "Automated"]
    assert len(automated) == 24
    for _ in range(20):
        sim.rig.runner.run(sim.rig.service.create_backup(who, CreateBackupRequest("rm-charlie")))
    with pytest.raises(errors.BackupQuotaExceeded):
        sim.rig.service.create_backup(who, CreateBackupRequest("rm-charlie"))
    sim.run(at(0, 7, 0))  # after 20 manual jobs, the automated ones go on
    assert len([j for j in sim.jobs("rm-charlie") if j.job_mode == "Automated"]) == 28


# -- inside the service ---------------------------------------------------------------------


@pytest.mark.parametrize("asked", [False, True], ids=["default", "scheduler-on"])
def test_test_services_run_the_scheduler_only_when_asked(tmp_path: Path, asked: bool) -> None:
    """memory_service (and the fixtures' services) keep the scheduler off, so no test
    meets an automated job it did not ask for; asked, it runs in Service.start's loops."""
    settings = Settings(
        state_dir=tmp_path / "state",
        port=free_port(),
        probe_interval_seconds=1,
        scheduler_interval_seconds=0.1,
    )
    clock = ManualClock(MONDAY)
    memory = memory_service(settings, scheduler=asked, clock=clock)
    instance_id = memory.add_instance()
    with memory.service.core.catalog.write() as s:
        policy = policy_for(s, instance_id)
        policy.preferred_backup_period = EVERY_DAY
        s.add(policy)
    clock.set(MONDAY + timedelta(hours=2) + spread_offset(instance_id) + timedelta(minutes=1))
    memory.service.start()
    try:
        deadline = time.monotonic() + (10 if asked else 1)
        jobs: list[BackupJob] = []
        while time.monotonic() < deadline and not jobs:
            with memory.service.core.catalog.read() as s:
                jobs = list(s.scalars(select(BackupJob)))
            time.sleep(0.1)
    finally:
        memory.service.stop()
        memory.service.core.catalog.dispose()
    assert [j.job_mode for j in jobs] == (["Automated"] if asked else [])
