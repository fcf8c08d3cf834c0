"""Reading typed action parameters from the merged query/form parameters.

Names stay Alibaba's at this edge. An empty value counts as absent (SDKs send empty
optional fields). Every failure is an :class:`ApiError` naming the parameter.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from rdsbackup.api.errors import ApiError


class Params:
    def __init__(self, raw: Mapping[str, str]) -> None:
        self.raw = raw

    def optional(self, name: str) -> str | None:
        value = self.raw.get(name)
        return value if value else None

    def required(self, name: str) -> str:
        value = self.optional(name)
        if value is None:
            raise ApiError("MissingParameter", param=name)
        return value

    def choice(
        self,
        name: str,
        allowed: Iterable[str],
        *,
        default: str | None = None,
        code: str = "InvalidParameter",
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
        code: str = "InvalidParameter",
    ) -> int | None:
        value = self.optional(name)
        if value is None:
            return default
        try:
            number = int(value, 10)
        except ValueError:
            raise _invalid(code, name, "It must be an integer.") from None
        options = list(allowed) if allowed is not None else None
        if (
            (minimum is not None and number < minimum)
            or (maximum is not None and number > maximum)
            or (options is not None and number not in options)
        ):
            raise _invalid(code, name, _range_text(minimum, maximum, options))
        return number

    def csv(self, name: str, *, max_items: int | None = None) -> list[str]:
        value = self.optional(name)
        if value is None:
            return []
        items = [v.strip() for v in value.split(",")]
        if any(not v for v in items):
            raise _invalid("InvalidParameter", name, "It contains an empty item.")
        if max_items is not None and len(items) > max_items:
            raise _invalid("InvalidParameter", name, f"At most {max_items} items.")
        return list(dict.fromkeys(items))

    def timestamp(self, name: str, fmt: str, *, code: str) -> datetime | None:
        value = self.optional(name)
        if value is None:
            return None
        try:
            return datetime.strptime(value, fmt)
        except ValueError:
            raise ApiError(code) from None


def _invalid(code: str, name: str, detail: str) -> ApiError:
    if code == "InvalidParameter":
        return ApiError(code, detail, param=name)
    return ApiError(code, detail)


def _range_text(minimum: int | None, maximum: int | None, options: list[int] | None) -> str:
    if options is not None:
        return "Valid values: " + ", ".join(str(o) for o in options) + "."
    if minimum is not None and maximum is not None:
        return f"It must be between {minimum} and {maximum}."
    if minimum is not None:
        return f"It must be at least {minimum}."
    return f"It must be at most {maximum}."
