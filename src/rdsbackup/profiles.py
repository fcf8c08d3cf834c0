"""The CLI's profiles: where the API is and which access key signs for it.

``~/.config/rdsbackup/profiles.toml`` (``$XDG_CONFIG_HOME`` respected, or the file named
by ``RDSBACKUP_PROFILES``) holds one table per profile::

    [default]
    endpoint = "http://127.0.0.1:8080/"
    access_key_id = "LTAI..."
    access_key_secret = "..."
    region_id = "cn-hangzhou"

The file holds secrets: it is refused when its group or others may read it (as ssh
refuses a private key), and written 0600 in a 0700 folder. The environment overrides a
profile's fields: ``RDSBACKUP_ENDPOINT``, ``ALIBABA_CLOUD_ACCESS_KEY_ID``,
``ALIBABA_CLOUD_ACCESS_KEY_SECRET``, ``ALIBABA_CLOUD_REGION_ID`` (the names the Alibaba
SDKs and CLI read); ``RDSBACKUP_PROFILE`` picks the profile.
"""

from __future__ import annotations

import json
import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_PROFILE = "default"
DEFAULT_REGION = "cn-hangzhou"
FIELDS = ("endpoint", "access_key_id", "access_key_secret", "region_id")
ENV = {
    "endpoint": "RDSBACKUP_ENDPOINT",
    "access_key_id": "ALIBABA_CLOUD_ACCESS_KEY_ID",
    "access_key_secret": "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
    "region_id": "ALIBABA_CLOUD_REGION_ID",
}


class ProfileError(Exception):
    """The profile cannot be used as it is (missing, incomplete, too open): a usage error."""


@dataclass(frozen=True)
class Profile:
    name: str
    endpoint: str
    access_key_id: str
    access_key_secret: str = field(repr=False)
    region_id: str = DEFAULT_REGION

    @property
    def url(self) -> str:
        """The endpoint as a base URL; a bare ``host:port`` means plain HTTP, as the
        service serves by default."""
        base = self.endpoint if "://" in self.endpoint else f"http://{self.endpoint}"
        return base.rstrip("/") + "/"


def profiles_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("RDSBACKUP_PROFILES"):
        return Path(env["RDSBACKUP_PROFILES"])
    config_home = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "rdsbackup" / "profiles.toml"


def read_profiles(path: Path) -> dict[str, dict[str, str]]:
    """Every profile in ``path`` (none when it does not exist)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return {}
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ProfileError(
            f"{path} holds access key secrets but is open to others"
            f" (mode {stat.S_IMODE(mode):04o}); run: chmod 600 {path}"
        )
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ProfileError(f"{path}: {e}") from None
    profiles: dict[str, dict[str, str]] = {}
    for name, table in data.items():
        if not isinstance(table, dict):
            raise ProfileError(f"{path}: {name!r} is not a [profile] table")
        unknown = sorted(set(table) - set(FIELDS))
        if unknown:
            raise ProfileError(f"{path}: profile {name!r} has unknown field {unknown[0]!r}")
        profiles[name] = {k: str(v) for k, v in table.items()}
    return profiles


def load_profile(
    name: str | None = None, *, path: Path | None = None, env: Mapping[str, str] | None = None
) -> Profile:
    """Profile ``name`` (else ``RDSBACKUP_PROFILE``, else ``default``) with the
    environment's overrides. A named profile must exist; the default one may be given
    wholly by the environment."""
    env = os.environ if env is None else env
    path = path or profiles_path(env)
    chosen = name or env.get("RDSBACKUP_PROFILE") or DEFAULT_PROFILE
    profiles = read_profiles(path)
    if chosen not in profiles and chosen != DEFAULT_PROFILE:
        known = ", ".join(sorted(profiles)) or "none"
        raise ProfileError(f"no profile {chosen!r} in {path} (profiles: {known})")
    values = dict(profiles.get(chosen, {}))
    for key, var in ENV.items():
        if env.get(var):
            values[key] = env[var]
    missing = [k for k in ("endpoint", "access_key_id", "access_key_secret") if not values.get(k)]
    if missing:
        raise ProfileError(
            f"profile {chosen!r} lacks {', '.join(missing)}"
            f" (add it with `rdsbackup profile add {chosen}`, or set {ENV[missing[0]]})"
        )
    return Profile(
        chosen,
        values["endpoint"],
        values["access_key_id"],
        values["access_key_secret"],
        values.get("region_id") or DEFAULT_REGION,
    )


def save_profile(profile: Profile, path: Path) -> None:
    """Add or replace ``profile`` in ``path``, written 0600 (its folder 0700 if made)."""
    profiles = read_profiles(path)
    profiles[profile.name] = {
        "endpoint": profile.endpoint,
        "access_key_id": profile.access_key_id,
        "access_key_secret": profile.access_key_secret,
        "region_id": profile.region_id,
    }
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    lines: list[str] = []
    for name, table in profiles.items():
        lines.append(f"[{_quoted(name)}]")
        lines.extend(f"{key} = {_quoted(value)}" for key, value in table.items())
        lines.append("")
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _quoted(value: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's for every character but the
    astral ones, which ``ensure_ascii=False`` leaves as they are)."""
    return json.dumps(value, ensure_ascii=False)
