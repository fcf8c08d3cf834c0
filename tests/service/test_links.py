"""Download links: what is signed, what is refused, what DescribeBackups gets."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from datetime import datetime
from urllib.parse import unquote, urlsplit

import pytest

from rdsbackup.api.download import parse_link
from rdsbackup.service.links import LinkMaker, LinkRejected, LinkSigner, LinkTarget, set_tag
from rdsbackup.service.views import BackupView

SECRET = b"k" * 44
CHECKSUM = "ab" * 32
NOW = 1_800_000_000


def _signer(secret: bytes = SECRET) -> LinkSigner:
    return LinkSigner(secret)


def _target(**changes: object) -> LinkTarget:
    base = LinkTarget(7, set_tag(CHECKSUM), None, NOW + 60)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_a_signed_link_verifies_until_it_expires() -> None:
    target = _target(object_name="db/shop.dump.zst")
    signature = _signer().sign(target)
    _signer().verify(target, signature, now=NOW)
    _signer().verify(target, signature, now=NOW + 60)
    with pytest.raises(LinkRejected, match="expired"):
        _signer().verify(target, signature, now=NOW + 61)


@pytest.mark.parametrize(
    "change",
    [
        {"backup_id": 8},
        {"set_tag": set_tag("cd" * 32)},
        {"object_name": "globals.sql.zst"},
        {"object_name": ""},
        {"object_name": "set"},
        {"expires": NOW + 3600},
    ],
    ids=["other set", "other set with the same id", "other object", "empty name", "scope", "later"],
)
def test_a_signature_is_for_one_target_only(change: dict[str, object]) -> None:
    signature = _signer().sign(_target())
    with pytest.raises(LinkRejected, match="signature"):
        _signer().verify(_target(**change), signature, now=NOW)


@pytest.mark.parametrize("signature", ["", "00" * 32, "not hex at all", "é"])
def test_made_up_signatures_are_refused(signature: str) -> None:
    with pytest.raises(LinkRejected):
        _signer().verify(_target(), signature, now=NOW)


def test_another_secret_makes_other_signatures_and_the_secret_itself_is_not_the_key() -> None:
    target = _target()
    assert _signer().sign(target) != _signer(b"other").sign(target)
    raw = hmac.new(SECRET, target.message(), hashlib.sha256).hexdigest()
    assert _signer().sign(target) != raw
    with pytest.raises(LinkRejected):
        _signer().verify(target, raw, now=NOW)


def _maker(db_objects: dict[str, str] | None = None) -> LinkMaker:
    def lookup(backup_id: int, checksum: str) -> dict[str, str]:
        assert (backup_id, checksum) == (7, CHECKSUM)
        return db_objects or {}

    return LinkMaker(_signer(), "https://backups.example/", "http://10.0.0.5:8780", 3600, lookup)


@pytest.mark.parametrize(
    "name", [None, "manifest.json", "db/caf%C3%A9.dump.zst", "db/a b?c#d&Expires=1.dump"]
)
def test_a_link_reads_back_as_the_target_it_was_made_for(name: str | None) -> None:
    maker = _maker()
    target = maker.target(7, CHECKSUM, name, expires=NOW + 5)
    url = urlsplit(maker.url(target))
    assert (url.scheme, url.netloc) == ("https", "backups.example")
    rest = unquote(url.path).removeprefix("/download/")  # what the ASGI server decodes
    parsed, signature = parse_link(rest, url.query)
    assert parsed == target
    _signer().verify(parsed, signature, now=NOW)


def _view(**changes: object) -> BackupView:
    when = datetime(2025, 1, 1)
    view = BackupView(
        id=7,
        instance_id="rm-1",
        status="Success",
        method="Logical",
        kind="FullBackup",
        mode="Manual",
        initiator="User",
        strategy="db",
        db_names=["shop"],
        start_time=when,
        end_time=when,
        size=1,
        checksum=CHECKSUM,
        consistent_time=when,
        engine="PostgreSQL",
        engine_version="16",
        host_instance_id="rm-1",
        store_status="Enabled",
        is_avail=True,
        meta_status="OK",
        encryption="{}",
        expire_time=None,
        parent_id=None,
        failed_reason="",
        job_id=1,
    )
    return dataclasses.replace(view, **changes)  # type: ignore[arg-type]


def test_only_successful_available_sets_get_links() -> None:
    maker = _maker()
    assert maker.for_set(_view(status="Failed")) is None
    assert maker.for_set(_view(is_avail=False)) is None
    links = maker.for_set(_view())
    assert links is not None and links.by_db == []
    assert links.url.startswith("https://backups.example/download/7?Expires=")
    assert links.intranet_url.startswith("http://10.0.0.5:8780/download/7?Expires=")


def test_per_database_links_point_at_each_database_object() -> None:
    maker = _maker({"shop": "db/shop.dump.zst", "日本": "db/%E6%97%A5%E6%9C%AC.dump.zst"})
    links = maker.for_set(_view())
    assert links is not None
    assert [d.database for d in links.by_db] == ["shop", "日本"]
    shop = urlsplit(links.by_db[0].url)
    assert shop.path == "/download/7/db/shop.dump.zst"
    assert (
        urlsplit(links.by_db[1].url).path
        == "/download/7/db/%25E6%2597%25A5%25E6%259C%25AC.dump.zst"
    )
    assert links.by_db[0].intranet_url.startswith("http://10.0.0.5:8780/download/7/db/shop")
