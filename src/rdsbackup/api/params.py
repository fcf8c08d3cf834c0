"""Reading typed action parameters from the merged query/form parameters.

Names stay Alibaba's at this edge. An empty value counts as absent (SDKs send empty
optional fields). Every failure is an :class:`ApiError` naming the parameter.

Integers are ASCII digits only (``int()`` would also take full-width digits, ``3_0``, ``+1`` and
spaces), with a leading ``-`` only where a negative value means something. Ids are
1 to 2**63-1, the catalog's integer range. No value may hold a character XML 1.0
cannot carry: values are stored and echoed, and every body must stay well-formed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime

from rdsbackup.api.errors import ApiError, ErrorCode, invalid
from rdsbackup.api.text import has_xml_forbidden

MAX_ID = 2**63 - 1
_UNSIGNED = re.compile(r"[0-9]{1,30}")
_SIGNED = re.compile(r"-?[0-9]{1,30}")


def parse_id(value: str) -> int | None:
    """The id ``value`` names, or None when no row can have it."""
    if not _UNSIGNED.fullmatch(value):
        return None
    number = int(value)
    return number if 1 <= number <= MAX_ID else None


class Params:
    def __init__(self, raw: Mapping[str, str]) -> None:
        self.raw = raw

    def optional(self, name: str) -> str | None:
        value = self.raw.get(name)
        if not value:
            return None
        if has_xml_forbidden(value):
            raise invalid(name, "It contains a control or non-character code point.")
        return value

    def required(self, name: str) -> str:
        value = self.optional(name)
        if value is None:
            raise ApiError(ErrorCode.MissingParameter, param=name)
        return value

    def choice(
        self,
        name: str,
        allowed: Iterable[str],
        *,
        default: str | None = None,
        code: ErrorCode = ErrorCode.InvalidParameter,
    ) -> str | None:
        value = self.optional(name)
        if value is None:
            return default
        options = list(allowed)
        if value not in options:
            raise _invalid(code, name, f"Valid values: {', '.join(options)}.")
        return value

    def integer(
        self,
        name: str,
        *,
        default: int | None = None,
        minimum: int | None = None,
        maximum: int | None = None,
        allowed: Iterable[int] | None = None,
        code: ErrorCode = ErrorCode.InvalidParameter,
    ) -> int | None:
        value = self.optional(name)
        if value is None:
            return default
        pattern = _SIGNED if minimum is not None and minimum < 0 else _UNSIGNED
        if not pattern.fullmatch(value):
            raise _invalid(code, name, "It must be an integer.")
        number = int(value)
        options = list(allowed) if allowed is not None else None
        if (
            (minimum is not None and number < minimum)
            or (maximum is not None and number > maximum)
            or (options is not None and number not in options)
        ):
            raise _invalid(code, name, _range_text(minimum, maximum, options))
        return number

    def page_number(self, code: ErrorCode = ErrorCode.InvalidParameter) -> int:
        """``PageNumber``: 1 to a million, 1 when absent."""
        return self.integer("PageNumber", default=1, minimum=1, maximum=10**6, code=code) or 1

    def id(self, name: str, *, code: ErrorCode, required: bool = False) -> int | None:
        """A row id; one no row can have (not digits, 0, beyond 64 bits) is ``code``."""
        value = self.required(name) if required else self.optional(name)
        if value is None:
            return None
        number = parse_id(value)
        if number is None:
            raise _invalid(code, name, "")
        return number

    def csv(self, name: str, *, max_items: int | None = None) -> list[str]:
        value = self.optional(name)
        if value is None:
            return []
        items = [v.strip() for v in value.split(",")]
        if any(not v for v in items):
            raise invalid(name, "It contains an empty item.")
        if max_items is not None and len(items) > max_items:
            raise invalid(name, f"At most {max_items} items.")
        return list(dict.fromkeys(items))

    def timestamp(self, name: str, fmt: str, *, code: ErrorCode) -> datetime | None:
        value = self.optional(name)
        if value is None:
            return None
        try:
            if not value.isascii():  # strptime takes any Unicode digit
                raise ValueError(value)
            return datetime.strptime(value, fmt)
        except ValueError:
            raise _invalid(code, name, "") from None


def _invalid(code: ErrorCode, name: str, detail: str) -> ApiError:
    return ApiError(code, detail, param=name)


def _range_text(minimum: int | None, maximum: int | None, options: list[int] | None) -> str:
    if options is not None:
        return "Valid values: " + ", ".join(str(o) for o in options) + "."
    if minimum is not None and maximum is not None:
        return f"It must be between {minimum} and {maximum}."
    if minimum is not None:
        return f"It must be at least {minimum}."
    return f"It must be at most {maximum}."
