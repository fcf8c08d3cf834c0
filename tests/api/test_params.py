from __future__ import annotations

import pytest

from rdsbackup.api.errors import ApiError
from rdsbackup.api.params import Params


def code_of(fn: object) -> tuple[str, str]:
    with pytest.raises(ApiError) as e:
        fn()  # type: ignore[operator]
    return e.value.code, e.value.message


def test_required_names_the_missing_parameter() -> None:
    code, message = code_of(lambda: Params({"X": ""}).required("DBInstanceId"))
    assert code == "MissingParameter" and '"DBInstanceId"' in message


def test_choice_uses_the_specific_code() -> None:
    p = Params({"BackupMethod": "Fancy"})
    code, _ = code_of(
        lambda: p.choice("BackupMethod", ("Physical",), code="InvalidBackupMethod.ValueNotSupport")
    )
    assert code == "InvalidBackupMethod.ValueNotSupport"
    assert p.choice("Other", ("a",), default="a") == "a"


@pytest.mark.parametrize("value", ["abc", "1.5", "0", "101"])
def test_integer_bounds(value: str) -> None:
    code, message = code_of(lambda: Params({"N": value}).integer("N", minimum=1, maximum=100))
    assert code == "InvalidParameter" and '"N"' in message


def test_integer_allowed_set_and_csv() -> None:
    assert Params({"PageSize": "50"}).integer("PageSize", allowed=(30, 50, 100)) == 50
    assert (
        code_of(lambda: Params({"PageSize": "40"}).integer("PageSize", allowed=(30, 50)))[0]
        == "InvalidParameter"
    )
    assert Params({"D": "a, b,a"}).csv("D") == ["a", "b"]
    assert code_of(lambda: Params({"D": "a,,b"}).csv("D"))[0] == "InvalidParameter"
    assert (
        code_of(lambda: Params({"D": ",".join("x" * 3 for _ in range(3))}).csv("D", max_items=2))[0]
        == "InvalidParameter"
    )
