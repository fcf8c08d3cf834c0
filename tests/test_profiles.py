"""Profiles: the file, the environment's overrides, and what is refused."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from rdsbackup.profiles import Profile, ProfileError, load_profile, read_profiles, save_profile


def test_saved_profiles_read_back_and_the_environment_overrides_them(tmp_path: Path) -> None:
    path = tmp_path / "rdsbackup" / "profiles.toml"
    save_profile(Profile("default", "10.0.0.5:8780", "LTAI1", 'se"cr\\et'), path)
    save_profile(Profile("lab", "https://lab/", "LTAI2", "s2", "cn-shanghai"), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert set(read_profiles(path)) == {"default", "lab"}

    default = load_profile(path=path, env={})
    assert (default.access_key_id, default.access_key_secret) == ("LTAI1", 'se"cr\\et')
    assert default.url == "http://10.0.0.5:8780/"  # a bare host:port is plain HTTP
    lab = load_profile(path=path, env={"RDSBACKUP_PROFILE": "lab"})
    assert (lab.url, lab.region_id) == ("https://lab/", "cn-shanghai")
    env = {"ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI9", "RDSBACKUP_ENDPOINT": "h:1"}
    assert load_profile("lab", path=path, env=env).access_key_id == "LTAI9"
    assert load_profile("lab", path=path, env=env).access_key_secret == "s2"
    assert "s2" not in repr(lab)


def test_the_environment_alone_is_a_profile(tmp_path: Path) -> None:
    env = {
        "RDSBACKUP_ENDPOINT": "127.0.0.1:8780",
        "ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI1",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "s",
    }
    assert load_profile(path=tmp_path / "none.toml", env=env).name == "default"
    with pytest.raises(ProfileError, match="lacks access_key_secret"):
        load_profile(
            path=tmp_path / "none.toml", env={**env, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": ""}
        )


def test_a_file_open_to_others_or_malformed_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "profiles.toml"
    path.write_text('[default]\nendpoint = "h:1"\naccess_key_id = "a"\naccess_key_secret = "s"\n')
    path.chmod(0o640)
    with pytest.raises(ProfileError, match=r"mode 0640\); run: chmod 600"):
        load_profile(path=path, env={})
    path.chmod(0o600)
    path.write_text('[default]\nendpoint = "h:1"\nsecret = "typo"\n')
    with pytest.raises(ProfileError, match="unknown field 'secret'"):
        load_profile(path=path, env={})
    path.write_text("[default\n")
    with pytest.raises(ProfileError, match=str(path)):
        load_profile(path=path, env={})
