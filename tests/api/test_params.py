from __future__ import annotations

from datetime import datetime

import pytest

from rdsbackup.api.errors import ApiError, ErrorCode
from rdsbackup.api.params import MAX_ID, Params, parse_id


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
        lambda: p.choice(
            "BackupMethod", ("Physical",), code=ErrorCode.InvalidBackupMethodValueNotSupport
        )
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


@pytest.mark.parametrize(
    "value",
    [
        "\uff13\uff10",
        "3_0",
        "+1",
        " 30",
        "30 ",
        "\u0663\u0660",
        "3\t",
        "0x1e",
        "30.0",
        "-30",
        "1e2",
    ],
)
def test_integer_is_ascii_digits_only(value: str) -> None:
    code, message = code_of(lambda: Params({"PageSize": value}).integer("PageSize", minimum=1))
    assert code == "InvalidParameter" and '"PageSize"' in message


def test_minus_only_where_negatives_mean_something() -> None:
    assert Params({"R": "-1"}).integer("R", minimum=-1, maximum=730) == -1
    assert code_of(lambda: Params({"R": "--1"}).integer("R", minimum=-1))[0] == "InvalidParameter"
    assert code_of(lambda: Params({"R": "-1"}).integer("R", minimum=0))[0] == "InvalidParameter"


@pytest.mark.parametrize(
    "value",
    ["0", "-1", "9223372036854775808", "99999999999999999999", "1" * 5000, "\uff11", "1_0", "+5"],
)
def test_ids_no_row_can_have_are_the_given_code(value: str) -> None:
    assert parse_id(value) is None
    code, _ = code_of(
        lambda: Params({"BackupId": value}).id(
            "BackupId", code=ErrorCode.InvalidBackupSetIDNotFound
        )
    )
    assert code == "InvalidBackupSetID.NotFound"


def test_largest_id_is_accepted() -> None:
    assert parse_id(str(MAX_ID)) == 9223372036854775807
    assert Params({"BackupId": "42"}).id("BackupId", code=ErrorCode.InvalidParameter) == 42


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x1b", "\x0b", "\x0c", "\ufffe", "\uffff"])
def test_values_refuse_characters_xml_cannot_carry(char: str) -> None:
    code, message = code_of(
        lambda: Params({"DBInstanceDescription": f"ab{char}cd"}).optional("DBInstanceDescription")
    )
    assert code == "InvalidParameter" and '"DBInstanceDescription"' in message
    assert Params({"D": "tab\tnew\nline\r ok é 漢 😀"}).optional("D") is not None


def test_unparseable_timestamp_names_the_parameter() -> None:
    code, message = code_of(
        lambda: Params({"RestoreTime": "garbage"}).timestamp(
            "RestoreTime", "%Y-%m-%dT%H:%M:%SZ", code=ErrorCode.InvalidParameter
        )
    )
    assert code == "InvalidParameter"
    assert message == 'The specified parameter "RestoreTime" is not valid.'


FULL_WIDTH_2026 = "\uff12\uff10\uff12\uff16"
ARABIC_INDIC_2026 = "\u0662\u0660\u0662\u0666"


@pytest.mark.parametrize("year", [FULL_WIDTH_2026, ARABIC_INDIC_2026])
def test_timestamps_take_ascii_digits_only(year: str) -> None:
    stamp = f"{year}-01-01T00:00:00Z"
    assert datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")  # what the check guards against
    code, _ = code_of(
        lambda: Params({"RestoreTime": stamp}).timestamp(
            "RestoreTime", "%Y-%m-%dT%H:%M:%SZ", code=ErrorCode.InvalidParameter
        )
    )
    assert code == "InvalidParameter"
