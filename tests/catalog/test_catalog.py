"""The catalog on SQLite and PostgreSQL: migrations, constraints, secrets at rest."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from cryptography.fernet import Fernet
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from rdsbackup.catalog.db import HEAD_REVISION, Catalog, alembic_config
from rdsbackup.catalog.models import AccessKey, BackupJob, Base, Instance
from rdsbackup.catalog.secrets import SecretBox
from rdsbackup.engines.registry import EngineRegistry
from rdsbackup.instances.inventory import Inventory, Registration
from rdsbackup.service.auth import AccountAdmin, KeyStore
from rdsbackup.states import JobStatus
from rdsbackup.timeutil import utc_day, utcnow


def test_migrations_build_exactly_the_models(catalog: Catalog) -> None:
    with catalog.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_head_revision_is_the_newest_migration(catalog: Catalog) -> None:
    scripts = ScriptDirectory.from_config(alembic_config(catalog.url))
    assert scripts.get_current_head() == HEAD_REVISION == catalog.revision()


_APART = """
import sys
from rdsbackup.catalog.db import HEAD_REVISION, Catalog, alembic_config
catalog = Catalog(sys.argv[1])
before = catalog.revision()
catalog.upgrade(apart=True)
print(before, catalog.revision(), any(m.startswith("alembic") for m in sys.modules))
"""


def test_the_service_migrates_in_a_child_process(tmp_path: Path) -> None:
    """Alembic's modules stay out of the long-lived process; the schema is complete."""
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    done = subprocess.run(
        [sys.executable, "-c", _APART, url], capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["None", HEAD_REVISION, "False"]
    catalog = Catalog(url)
    with catalog.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    catalog.dispose()


def test_a_failed_migration_says_why(tmp_path: Path) -> None:
    """A catalog written by a newer rdsbackup: its revision is unknown here."""
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    with catalog.engine.begin() as conn:
        conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32))"))
        conn.execute(text("INSERT INTO alembic_version VALUES ('9999')"))
    with pytest.raises(RuntimeError, match=r"catalog migration failed: .*'9999'"):
        catalog.upgrade(apart=True)
    assert catalog.revision() == "9999"
    catalog.dispose()


def _instance(catalog: Catalog, box: SecretBox) -> tuple[int, str]:
    account_id = AccountAdmin(catalog, box).ensure_account("a1")
    inventory = Inventory(catalog, box, EngineRegistry({}))
    instance_id = inventory.register(
        Registration(
            account_id=account_id,
            engine="MariaDB",
            host="127.0.0.1",
            port=1,
            admin_user="u",
            admin_password="db-password-in-clear",
        )
    )
    return account_id, instance_id


def _job(account_id: int, instance_id: str, status: str, token: str | None = None) -> BackupJob:
    now = utcnow()
    return BackupJob(
        instance_id=instance_id,
        account_id=account_id,
        status=status,
        method="Physical",
        requested_type="Auto",
        client_token=token,
        created_at=now,
        created_day=utc_day(now),
    )


def test_one_unfinished_job_per_instance_is_enforced_by_the_database(catalog: Catalog) -> None:
    box = SecretBox(Fernet.generate_key())
    account_id, instance_id = _instance(catalog, box)
    with catalog.write() as s:
        s.add_all(
            [
                _job(account_id, instance_id, "Finished"),
                _job(account_id, instance_id, "Failed"),
                _job(account_id, instance_id, "Uploading"),
            ]
        )
    with pytest.raises(IntegrityError), catalog.write() as s:
        s.add(_job(account_id, instance_id, "NoStart"))
    with catalog.write() as s:
        s.scalars(
            select(BackupJob).where(BackupJob.status == "Uploading")
        ).one().status = "Finished"
    with catalog.write() as s:
        s.add(_job(account_id, instance_id, "NoStart"))


def test_states_are_stored_as_their_api_words(catalog: Catalog) -> None:
    """Enum members in, the plain words in the table: no migration came with the enums."""
    box = SecretBox(Fernet.generate_key())
    account_id, instance_id = _instance(catalog, box)
    with catalog.write() as s:
        s.add(_job(account_id, instance_id, JobStatus.UPLOADING))
    with catalog.read() as s:
        job = s.execute(
            text("SELECT status, progress_status, job_mode, task_action FROM backup_jobs")
        ).one()
        instance = s.execute(text("SELECT status, lock_mode FROM instances")).one()
        found = s.scalars(select(BackupJob.id).where(BackupJob.status == "Uploading")).all()
    assert tuple(job) == ("Uploading", "NoStart", "Manual", "TempBackupTask")
    assert tuple(instance) == ("Creating", "Unlock")
    assert len(found) == 1


def test_client_token_is_unique_per_account(catalog: Catalog) -> None:
    box = SecretBox(Fernet.generate_key())
    account_id, instance_id = _instance(catalog, box)
    with catalog.write() as s:
        s.add(_job(account_id, instance_id, "Finished", token="tok"))
    with pytest.raises(IntegrityError), catalog.write() as s:
        s.add(_job(account_id, instance_id, "Finished", token="tok"))


def test_secrets_are_encrypted_at_rest(catalog: Catalog) -> None:
    box = SecretBox(Fernet.generate_key())
    _instance(catalog, box)
    key_id, secret = AccountAdmin(catalog, box).create_key("a1")
    with catalog.read() as s:
        stored_key = s.scalars(select(AccessKey)).one()
        stored_instance = s.scalars(select(Instance)).one()
    assert secret.encode() not in stored_key.secret_ciphertext
    assert b"db-password-in-clear" not in stored_instance.password_ciphertext
    record = KeyStore(catalog, box).lookup(key_id)
    assert record is not None and record.secret == secret and record.active
    with pytest.raises(ValueError, match="secret_key"):
        KeyStore(catalog, SecretBox(Fernet.generate_key())).lookup(key_id)


def test_nonces_are_single_use_until_they_expire(catalog: Catalog) -> None:
    keys = KeyStore(catalog, SecretBox(Fernet.generate_key()))
    later = utcnow() + timedelta(minutes=15)
    assert keys.use_nonce("AK", "n1", later)
    assert not keys.use_nonce("AK", "n1", later)
    assert keys.use_nonce("AK2", "n1", later)
    assert keys.purge_nonces(utcnow() + timedelta(minutes=16)) == 2
    assert keys.use_nonce("AK", "n1", later)


def test_ids_are_never_reused_after_a_delete(catalog: Catalog) -> None:
    box = SecretBox(Fernet.generate_key())
    account_id, instance_id = _instance(catalog, box)
    with catalog.write() as s:
        job = _job(account_id, instance_id, "Finished")
        s.add(job)
        s.flush()
        first = job.id
    with catalog.write() as s:
        s.delete(s.get_one(BackupJob, first))
    with catalog.write() as s:
        again = _job(account_id, instance_id, "Finished")
        s.add(again)
        s.flush()
        assert again.id > first
