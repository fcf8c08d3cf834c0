"""The encryption settings: a key generated once into the state folder, configured keys,
the active id, and keys that are refused."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from rdsbackup.config import Settings
from rdsbackup.storage.keys import Keyring


def _b64() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def test_a_key_is_generated_once_into_the_state_folder(tmp_path: Path) -> None:
    keys, active = Settings(state_dir=tmp_path).resolved_encryption_keys()
    assert list(keys) == [active] and active.startswith("local-")
    assert (tmp_path / "encryption.keys").stat().st_mode & 0o777 == 0o600
    assert Settings(state_dir=tmp_path).resolved_encryption_keys() == (keys, active)
    assert len(Keyring.from_settings(keys, active).keys[active]) == 32


def test_configured_keys_keep_the_state_folders_key_readable(tmp_path: Path) -> None:
    local, local_id = Settings(state_dir=tmp_path).resolved_encryption_keys()
    new = _b64()
    keys, active = Settings(
        state_dir=tmp_path, encryption_keys={"k2": new}
    ).resolved_encryption_keys()
    assert active == "k2" and keys == {"k2": new, local_id: local[local_id]}
    with pytest.raises(ValueError, match="encryption_key_id"):
        Settings(
            state_dir=tmp_path, encryption_keys={"a": new, "b": _b64()}
        ).resolved_encryption_keys()
    keys, active = Settings(
        state_dir=tmp_path, encryption_keys={"a": new, "b": _b64()}, encryption_key_id="b"
    ).resolved_encryption_keys()
    assert active == "b"


def test_configured_keys_need_no_state_folder_key(tmp_path: Path) -> None:
    keys, active = Settings(
        state_dir=tmp_path, encryption_keys={"k": _b64()}
    ).resolved_encryption_keys()
    assert (list(keys), active) == (["k"], "k")
    assert not (tmp_path / "encryption.keys").exists()


def test_bad_keys_and_unknown_active_ids_are_refused(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, encryption_keys={"k": "c2hvcnQ="})
    with pytest.raises(ValueError, match="32 bytes"):
        Keyring.from_settings(*settings.resolved_encryption_keys())
    with pytest.raises(ValueError, match="not base64"):
        Keyring.from_settings({"k": "%%%"}, "k")
    settings = Settings(state_dir=tmp_path, encryption_keys={"k": _b64()}, encryption_key_id="x")
    with pytest.raises(ValueError, match="'x' is not configured"):
        Keyring.from_settings(*settings.resolved_encryption_keys())


def test_keys_come_from_the_environment_as_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = _b64()
    monkeypatch.setenv("RDSBACKUP_ENCRYPTION_KEYS", f'{{"env-key": "{key}"}}')
    monkeypatch.setenv("RDSBACKUP_ENCRYPT_BACKUPS", "true")
    settings = Settings(state_dir=tmp_path)
    assert settings.encrypt_backups
    assert settings.resolved_encryption_keys() == ({"env-key": key}, "env-key")
    assert key not in repr(settings)
