from __future__ import annotations

import re

import pytest

from rdsbackup.api.errors import CATALOGUE, ApiError, ErrorCode


@pytest.mark.parametrize("code", list(ErrorCode))
def test_every_message_renders_with_no_placeholder_left(code: ErrorCode) -> None:
    assert code in CATALOGUE
    for fields in ({}, {"param": "RestoreTime", "sts": "GET&%2F&x"}):
        message = ApiError(code, "detail", **fields).message
        assert not re.search(r"\{[^}]*\}", message), message


def test_wire_strings_are_unchanged() -> None:
    assert str(ErrorCode.InvalidBackupSetIDNotFound) == "InvalidBackupSetID.NotFound"
    assert str(ErrorCode.OperationDeniedApiForbidden) == "OperationDenied.ApiForbidden"
    assert str(ErrorCode.ThrottlingUser) == "Throttling.User"
    assert ErrorCode("InvalidAction.NotFound") is ErrorCode.InvalidActionNotFound
    assert all(code.value == str(code) for code in ErrorCode)
    assert ApiError(ErrorCode.ThrottlingUser).status == 400
    assert ApiError(ErrorCode.UnsupportedHTTPMethod).status == 400


def test_parameter_is_named() -> None:
    message = ApiError(ErrorCode.InvalidParameter, param="RestoreTime").message
    assert message == 'The specified parameter "RestoreTime" is not valid.'
