"""What every database can store: the check a contract runs on each validated value.

Mirrors live in PostgreSQL, MySQL/MariaDB and SQLite; a value one of them would
refuse or change (a NUL in text, a lone surrogate, an integer past 64 bits, NaN,
a naive datetime, one past year 9999 once in UTC) is refused at validation,
with the reason, on the owner's side and the consumer's alike.
"""

from __future__ import annotations

__all__ = ["unportable_reason"]

import datetime as dt
import math
import re
import uuid
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_NOT_FINITE = (
    "is not a finite number: NaN and Infinity have no JSON form and not every database stores them"
)


def unportable_reason(value: Any) -> str | None:
    """Why a validated value cannot be stored faithfully by every database, or None."""
    check = _CHECKS.get(type(value))
    if check is None:
        check = _CHECKS[type(value)] = _check_for(type(value))
    return check(value)


def _portable(value: Any) -> None:
    return None


def _check_str(value: str) -> str | None:
    if "\x00" in value:
        return "contains a NUL character, which databases reject"
    if not value.isascii() and _SURROGATE_RE.search(value):
        return "contains a lone surrogate, which is not valid UTF-8 text"
    return None


def _check_datetime(value: dt.datetime) -> str | None:
    if value.tzinfo is None or value.utcoffset() is None:
        return "naive datetime: a UTC offset is required"
    if value.year in (dt.MINYEAR, dt.MAXYEAR):  # an offset is under a day: only these overflow
        try:
            value.astimezone(dt.UTC)  # mirrors store datetimes in UTC
        except OverflowError:
            return "is out of range once converted to UTC"
    return None


def _check_int(value: int) -> str | None:
    # Compared, not ``in range(...)``: membership of an int subclass (an IntEnum member)
    # walks the range one number at a time.
    if not _INT64_MIN <= value <= _INT64_MAX:
        return "is outside the 64-bit integer range that databases store"
    return None


def _check_float(value: float) -> str | None:
    return None if math.isfinite(value) else _NOT_FINITE


def _check_decimal(value: Decimal) -> str | None:
    return None if value.is_finite() else _NOT_FINITE


def _check_model(value: BaseModel) -> str | None:
    for item in value.__dict__.values():
        problem = unportable_reason(item)
        if problem:
            return problem
    return None


def _check_items(value: Iterable[Any]) -> str | None:
    for item in value:
        problem = unportable_reason(item)
        if problem:
            return problem
    return None


def _check_dict(value: dict[Any, Any]) -> str | None:
    for k, item in value.items():
        problem = unportable_reason(k) or unportable_reason(item)
        if problem:
            return problem
    return None


def _check_for(cls: type) -> Callable[[Any], str | None]:
    """The check of values of type ``cls`` (subclasses included: enum members of str too)."""
    if issubclass(cls, str):
        return _check_str
    if issubclass(cls, dt.datetime):
        return _check_datetime
    if issubclass(cls, bool):
        return _portable
    checks: tuple[tuple[type | tuple[type, ...], Callable[[Any], str | None]], ...] = (
        (int, _check_int),
        (float, _check_float),
        (Decimal, _check_decimal),
        (BaseModel, _check_model),
        ((list, tuple, set, frozenset), _check_items),
        (dict, _check_dict),
    )
    for base, check in checks:
        if issubclass(cls, base):
            return check
    return _portable


_CHECKS: dict[type, Callable[[Any], str | None]] = {
    type(None): _portable,
    bool: _portable,
    uuid.UUID: _portable,
    dt.date: _portable,
}
"""The check of each type of value met so far, by exact type (looked up once per type)."""
