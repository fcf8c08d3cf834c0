"""Settings: embedded defaults, overridden by a TOML file, overridden by RDSBACKUP_* env vars.

With no file and no environment the service runs on its embedded defaults: everything
under one state folder (SQLite catalog, local backup storage, local instances), jobs
run in-process.
"""

from __future__ import annotations

import base64
import os
import secrets
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

CONFIG_ENV = "RDSBACKUP_CONFIG"
INLINE_LEVEL_MAX = 3
"""zstd levels compressed in line by default (``compression_threads = 0``)."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RDSBACKUP_", extra="forbid")

    state_dir: Path = Path(".state")
    catalog_url: str | None = None
    """SQLAlchemy URL; default: SQLite in the state folder. ``postgresql+psycopg://...`` works."""
    storage_dir: Path | None = None
    """Local folder for backup sets; default: ``<state_dir>/backups``."""
    auto_migrate: bool = True
    """Migrate the catalog when the service starts. Nodes sharing a PostgreSQL catalog
    set it off and run ``rdsbackup migrate`` once per upgrade (docs/multinode.md)."""
    storage_url: str | None = None
    """``s3://bucket[/prefix]``: backup sets in an S3-compatible bucket (docs/storage.md);
    unset: the local folder ``storage_dir``."""
    s3_endpoint_url: str | None = None
    """S3 endpoint (``https://s3.oss-cn-hangzhou.aliyuncs.com``, MinIO ...); unset: AWS."""
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = Field(default=None, repr=False)
    s3_addressing_style: Literal["virtual", "path"] = "virtual"
    """Alibaba OSS accepts virtual-hosted addressing only; some local servers need path."""
    s3_part_size_mb: int = Field(default=5, ge=5, le=5120)
    """Size of an upload's first parts; with ``s3_part_growth`` it doubles every 1,000
    parts (S3 allows 10,000: 5 MiB first reaches 4.9 TiB; S3 objects end at 5 TiB)."""
    s3_part_growth: bool = True
    """Off: every part of ``s3_part_size_mb`` (servers that want equal parts, such as
    Cloudflare R2); the largest object is then 10,000 parts of that size."""
    s3_max_concurrency: int = Field(default=2, ge=1, le=64)
    """Parts uploaded at once per object: an upload holds this many parts plus the one
    being filled in memory (15 MiB at the defaults; docs/storage.md)."""
    instances_dir: Path | None = None
    """Where provisioned local servers live; default: ``<state_dir>/instances``."""
    secret_key: str | None = Field(default=None, repr=False)
    """Fernet key encrypting secrets at rest; default: generated once into the state folder."""

    host: str = "127.0.0.1"
    port: int = 8780
    host_id: str = "rds.aliyuncs.com"
    """``HostId`` in error bodies."""
    public_url: str | None = None
    """Base of ``BackupDownloadURL`` links; default ``http://{host}:{port}``."""
    intranet_url: str | None = None
    """Base of ``BackupIntranetDownloadURL`` links; default: ``public_url``."""
    download_link_seconds: int = Field(default=3600, gt=0)
    region_id: str = "cn-hangzhou"
    zone_id: str = "cn-hangzhou-h"

    max_parallel_jobs: int = 2
    dispatcher: Literal["threads", "celery"] = "threads"
    """Who runs jobs: threads of this process, or Celery workers (``rdsbackup worker
    --queue``) on each instance's host queue (docs/workers.md)."""
    broker_url: str = "redis://127.0.0.1:6379/0"
    """Celery's broker (Redis or RabbitMQ) when ``dispatcher = "celery"``."""
    api_processes: int = Field(default=1, ge=1, le=64)
    """Processes answering the API on ``port`` (``serve`` and N-1 ``api-server``, sharing
    it with SO_REUSEPORT). More than one needs ``dispatcher = "celery"``
    (rdsbackup.apiprocs)."""
    job_lease_seconds: float = 30.0
    heartbeat_seconds: float = 1.0
    probe_interval_seconds: float = 15.0
    janitor_interval_seconds: float = 60.0
    node_id: str = Field(default_factory=socket.gethostname)

    signature_window_seconds: int = 900
    api_rate_per_second: float = Field(default=100.0, gt=0)
    """Requests per second each AccessKeyId may make on average (else Throttling.User)."""
    api_burst: int = Field(default=200, ge=1)
    """Requests an AccessKeyId may make at once before the rate applies."""
    database_probe_seconds: float = Field(default=1.0, ge=0)
    """A DBName the catalog does not know asks the instance's server: up to 3 times at
    once, then once per this many seconds (per instance), so unknown names cannot
    flood the server with connections."""
    daily_backup_limit: int = 20
    client_token_hours: int = 24
    default_retention_days: int = 7

    scheduler_enabled: bool = True
    """Automated backups by each instance's backup policy (the scheduler loop of
    ``rdsbackup serve``; one node of those sharing a catalog runs it, by a lease)."""
    scheduler_interval_seconds: float = Field(default=30.0, gt=0)
    """How often the scheduler looks for due backups: a backup starts at most this late."""
    scheduler_lease_seconds: float = Field(default=120.0, gt=0)
    """How long the scheduler's lease lasts unrenewed: another node takes over after it."""

    log_backup_enabled: bool = True
    """The log shipper loop of ``rdsbackup serve``: streams the binlogs / WAL of every
    Running instance whose policy has EnableBackupLog on (docs/logs.md)."""
    log_ship_interval_seconds: float = Field(default=1.0, gt=0)
    """How often the shipper stores what the streaming tools completed."""
    log_switch_seconds: float = Field(default=60.0, gt=0)
    """Close each streamed server's current log this often (FLUSH BINARY LOGS,
    pg_switch_wal()): an idle server's newest commits are stored within about this."""
    log_lease_seconds: float = Field(default=30.0, gt=0)
    """How long a node's hold on an instance's log stream lasts unrenewed."""

    full_backup_every_hours: float = 24.0
    """BackupType=Auto takes an incremental while the newest full set is younger than this."""

    compression: str = "zstd"
    """zstd (default), gzip or none; CreateBackup's CompressType overrides it per backup."""
    compression_level: int = 1
    compression_threads: int = Field(default=0, ge=0)
    """zstd worker threads per stream; 0 (default): none at levels up to
    :data:`INLINE_LEVEL_MAX` (one core compresses faster than the tools produce, and the
    workers' job buffers cost 28 MiB of resident memory), the cores above."""
    backup_parallel: int = Field(default_factory=lambda: max(1, os.cpu_count() or 1))
    fingerprint_backups: bool = False
    """Backups also count and checksum every table as of the set's consistent point, for
    VerifyBackup to compare a restore against: Logical sets (both engines) in the dump's
    snapshot, MariaDB Physical and Snapshot sets in a snapshot opened while commits are
    blocked, PostgreSQL Physical and Snapshot sets in snapshots a restore point matches
    (writes to user tables wait for that moment). Off by default: one more read of the
    data (about 2.1-2.3 s per GiB on the slower machine, 0.5-1.5 s on today's)."""
    snapshot_reflink: bool = True
    """Snapshot sets clone the data directory's files (copy-on-write) where its file
    system makes clones, and read the clones once the server's lock or backup mode is
    over; off: they always stream the files (docs/performance.md has the trade-off)."""
    encrypt_backups: bool = False
    """Encrypt new backup sets (chunked AES-256-GCM, docs/encryption.md) of instances
    whose policy does not say otherwise (EnableBackupEncryption / DisableBackupEncryption).
    Off by default: sets are stored as before."""
    encryption_keys: dict[str, str] = Field(default_factory=dict, repr=False)
    """Key-encryption keys, id -> base64 of 32 random bytes; they wrap each set's data
    key. Default: one key generated once into ``<state_dir>/encryption.keys`` (kept in
    the keyring also once keys are configured, so the sets it wrapped stay readable)."""
    encryption_key_id: str | None = None
    """The key id that wraps the data keys of new sets; default: the only configured
    key, else the state folder's. Sets name their key id: rotating keeps old ones readable."""

    log_format: Literal["json", "text"] = "json"
    """Log lines of ``rdsbackup serve``: JSON objects (one a line) or plain text."""
    metrics_enabled: bool = True
    """Serve Prometheus metrics at ``/metrics`` (docs/metrics.md)."""
    metrics_token: str | None = Field(default=None, min_length=16, repr=False)
    """Bearer token ``/metrics`` requires (16 characters or more); unset: only loopback
    clients may scrape."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(CONFIG_ENV)
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)

    @model_validator(mode="after")
    def _helpers_need_celery(self) -> Settings:
        if self.api_processes > 1 and self.dispatcher != "celery":
            raise ValueError(
                'api_processes > 1 needs dispatcher = "celery": the extra processes run no jobs'
            )
        return self

    @property
    def resolved_compression_threads(self) -> int:
        if self.compression_threads:
            return self.compression_threads
        if self.compression_level <= INLINE_LEVEL_MAX:
            return 1
        return max(1, os.cpu_count() or 1)

    @property
    def resolved_catalog_url(self) -> str:
        return self.catalog_url or f"sqlite:///{(self.state_dir / 'catalog.db').resolve()}"

    @property
    def resolved_storage_dir(self) -> Path:
        return (self.storage_dir or self.state_dir / "backups").resolve()

    @property
    def resolved_public_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host  # noqa: S104
        host = f"[{host}]" if ":" in host else host
        return (self.public_url or f"http://{host}:{self.port}").rstrip("/")

    @property
    def resolved_intranet_url(self) -> str:
        return (self.intranet_url or self.resolved_public_url).rstrip("/")

    @property
    def resolved_instances_dir(self) -> Path:
        return (self.instances_dir or self.state_dir / "instances").resolve()

    def resolved_secret_key(self) -> bytes:
        """The configured key, else the one kept in the state folder (created on first use)."""
        if self.secret_key:
            return self.secret_key.encode()
        path = self.state_dir / "secret.key"
        if not path.exists():
            from cryptography.fernet import Fernet

            self.state_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(Fernet.generate_key())
        return path.read_bytes().strip()

    def resolved_encryption_keys(self) -> tuple[dict[str, str], str]:
        """(key id -> base64 key, the active id): the configured keys and the state
        folder's (created on first use when none is configured)."""
        keys = dict(self.encryption_keys)
        path = self.state_dir / "encryption.keys"
        if not keys and not path.exists():
            self.state_dir.mkdir(parents=True, exist_ok=True)
            key_id = "local-" + secrets.token_hex(4)
            line = f"{key_id} {base64.b64encode(secrets.token_bytes(32)).decode()}\n"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(line)
        local: list[str] = []
        if path.exists():
            for line in path.read_text().splitlines():
                if line.strip():
                    key_id, _, key = line.strip().partition(" ")
                    keys.setdefault(key_id, key.strip())
                    local.append(key_id)
        if self.encryption_key_id:
            active = self.encryption_key_id
        elif self.encryption_keys:
            if len(self.encryption_keys) > 1:
                raise ValueError("several encryption_keys: say which is encryption_key_id")
            active = next(iter(self.encryption_keys))
        else:
            active = local[-1]
        return keys, active


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    if config_file is not None:
        os.environ[CONFIG_ENV] = str(config_file)
    return Settings(**overrides)


def new_password(length: int = 24) -> str:
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"
    return "".join(secrets.choice(alphabet) for _ in range(length))
