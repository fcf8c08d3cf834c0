"""The download route's parsing: which Range is served, which link paths are links."""

from __future__ import annotations

import pytest

from rdsbackup.api.download import Unsatisfiable, parse_link, parse_range
from rdsbackup.service.links import LinkRejected

SIZE = 1000


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-0", (0, 1)),
        ("bytes=0-99", (0, 100)),
        ("bytes=500-", (500, SIZE)),
        ("bytes=990-5000", (990, SIZE)),
        ("bytes=-10", (990, SIZE)),
        ("bytes=-5000", (0, SIZE)),
        (" bytes=1-2 ", (1, 3)),
        # Ignored: the whole body is served.
        ("bytes=5-1", None),
        ("bytes=0-1,5-6", None),
        ("items=0-1", None),
        ("bytes=-", None),
        ("bytes=a-b", None),
        ("bytes=\u0661-\u0662", None),  # non-ASCII digits
    ],
)
def test_ranges(header: str | None, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, SIZE) == expected


@pytest.mark.parametrize(
    ("header", "size"),
    [
        ("bytes=1000-", SIZE),
        ("bytes=5000-6000", SIZE),
        ("bytes=-0", SIZE),
        ("bytes=-1", 0),
        ("bytes=0-", 0),
    ],
)
def test_unsatisfiable_ranges(header: str, size: int) -> None:
    with pytest.raises(Unsatisfiable):
        parse_range(header, size)


QUERY = "Expires=1800000000&Set=abcd&Signature=ff"


def test_a_link_names_a_set_or_an_object() -> None:
    target, signature = parse_link("12", QUERY)
    assert (target.backup_id, target.object_name, target.expires, target.set_tag) == (
        12,
        None,
        1_800_000_000,
        "abcd",
    )
    assert signature == "ff"
    assert parse_link("12/db/x.dump.zst", QUERY)[0].object_name == "db/x.dump.zst"
    assert parse_link("12/", QUERY)[0].object_name == ""
    assert parse_link("1/../../etc/passwd", QUERY)[0].object_name == "../../etc/passwd"


@pytest.mark.parametrize(
    ("rest", "query"),
    [
        ("", QUERY),
        ("012", QUERY),
        ("-1", QUERY),
        ("1e3", QUERY),
        ("..", QUERY),
        ("12", "Expires=1800000000&Set=abcd"),
        ("12", "Set=abcd&Signature=ff"),
        ("12", QUERY + "&Signature=00"),
        ("12", "Expires=-5&Set=abcd&Signature=ff"),
        ("12", "Expires=1e9&Set=abcd&Signature=ff"),
        ("1" * 30, QUERY),
    ],
)
def test_what_is_not_a_link(rest: str, query: str) -> None:
    with pytest.raises(LinkRejected):
        parse_link(rest, query)
