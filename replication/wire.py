"""Strict readers for the wire format: JSON as RFC 8259 means it, RFC 3339 times.

Python's json module reads NaN and Infinity, keeps the last of repeated keys
and turns 1e999 into Infinity; datetime.fromisoformat reads ISO 8601 forms
RFC 3339 excludes. Each of these is a way for two readers to disagree on one
message, so the change event decoder refuses them with a precise reason.
"""

from __future__ import annotations

__all__ = ["RFC3339_RE", "StrictJSONError", "loads_strict", "parse_rfc3339", "writable_offsets"]

import datetime as dt
import functools
import json
import math
import re
from typing import Any, NoReturn

from pydantic import BaseModel


class StrictJSONError(ValueError):
    """The text is not JSON that every reader reads the same way."""


# RFC 3339 section 5.6 (date-time), with the offset left optional so that a naive
# time gets its own reason. [0-9], not \d, which matches every Unicode digit.
RFC3339_RE = re.compile(
    r"(?P<year>[0-9]{4})-(?P<month>[0-9]{2})-(?P<day>[0-9]{2})[Tt]"
    r"(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})(?:\.(?P<fraction>[0-9]+))?"
    r"(?P<offset>[Zz]|(?P<sign>[+-])(?P<offset_hour>[0-9]{2}):(?P<offset_minute>[0-9]{2}))?"
)
_SHOWN_LENGTH = 80
"""How much of an offending key or number a reason quotes."""


def _reject_constant(name: str) -> NoReturn:
    raise StrictJSONError(f"not valid JSON: {name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        # Valid JSON syntax, but Python reads it as Infinity, which no JSON or database holds.
        raise StrictJSONError(f"not valid JSON: {_shortened(text)} overflows to Infinity")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        # json.loads would silently keep the last value; other readers keep the first.
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise StrictJSONError(
                    f"duplicate key {_shortened(key)!r}: a JSON object must not repeat a key"
                )
            seen.add(key)
    return obj


def _shortened(text: str) -> str:
    return text if len(text) <= _SHOWN_LENGTH else f"{text[:_SHOWN_LENGTH]}..."


_DECODER = json.JSONDecoder(
    object_pairs_hook=_unique_keys, parse_constant=_reject_constant, parse_float=_finite_float
)
"""One decoder, built once (``json.loads`` with hooks builds one per call), shared as
``json.loads`` shares its default one."""


def loads_strict(raw: bytes | str) -> Any:
    """Parse JSON, refusing NaN/Infinity, numbers that overflow and repeated keys."""
    try:
        if isinstance(raw, bytes | bytearray):
            # What json.loads does with bytes: UTF-8, -16 or -32 by the first bytes.
            raw = raw.decode(json.detect_encoding(raw), "surrogatepass")
        elif not isinstance(raw, str):
            raise TypeError(
                f"the JSON object must be str, bytes or bytearray, not {type(raw).__name__}"
            )
        elif raw.startswith("\ufeff"):
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", raw, 0)
        return _DECODER.decode(raw)
    except StrictJSONError:
        raise
    except (ValueError, UnicodeDecodeError) as exc:
        raise StrictJSONError(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise StrictJSONError("not valid JSON: nested too deeply") from None


def parse_rfc3339(match: re.Match[str]) -> dt.datetime:
    """The datetime of an RFC 3339 match; ValueError when a part is out of range."""
    text = match[0]
    if (
        len(text) in _UTC_LENGTHS
        and text[-1] == "Z"
        and text[10] == "T"
        and text[11:13] < "24"  # Python 3.12+ would read hour 24 as the next midnight
    ):
        # The form encoders write (UTC, no fraction or six digits): the regex has
        # checked every character, so the C parser reads it as the groups would.
        return dt.datetime.fromisoformat(text)
    return _from_groups(match)


_UTC_LENGTHS = (len("2026-01-01T00:00:00Z"), len("2026-01-01T00:00:00.000000Z"))


def _from_groups(match: re.Match[str]) -> dt.datetime:
    year, month, day, hour, minute, second, fraction, offset, sign, off_hour, off_minute = (
        match.groups()
    )
    if offset in ("Z", "z"):
        zone = dt.UTC
    else:
        hours, minutes = int(off_hour), int(off_minute)
        if hours > 23 or minutes > 59:
            raise ValueError("offset out of range")
        zone = _zone(-1 if sign == "-" else 1, hours, minutes)
    # Digits past the microsecond are dropped, as datetime cannot hold them.
    micro = int(fraction[:6].ljust(6, "0")) if fraction else 0
    return dt.datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tzinfo=zone
    )


@functools.lru_cache(maxsize=64)
def _zone(sign: int, hours: int, minutes: int) -> dt.timezone:
    return dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes))


_MINUTE = dt.timedelta(minutes=1)


def writable_offsets(value: Any) -> Any:
    """``value`` with every datetime whose UTC offset has seconds moved to UTC, the same
    instant; anything else as it is (the same object when nothing changes).

    RFC 3339 writes an offset in hours and minutes, and pydantic's JSON drops the seconds
    of one: a historical zone's offset (``ZoneInfo("Europe/Paris")`` before 1911 is
    +00:09:21) would reach mirrors as another instant. Nested models are copied with
    the changed fields; lists, tuples, sets and dicts rebuilt.
    """
    if isinstance(value, dt.datetime):
        offset = value.utcoffset()
        if offset is not None and offset % _MINUTE:
            return value.astimezone(dt.UTC)
        return value
    if isinstance(value, BaseModel):
        changed = {}
        for name, item in value.__dict__.items():
            moved = writable_offsets(item)
            if moved is not item:
                changed[name] = moved
        return value.model_copy(update=changed) if changed else value
    if type(value) in (list, tuple, set, frozenset):
        items = [writable_offsets(item) for item in value]
        if all(moved is item for moved, item in zip(items, value, strict=True)):
            return value
        return type(value)(items)
    if type(value) is dict:
        pairs = [(writable_offsets(k), writable_offsets(v)) for k, v in value.items()]
        if all(k is k0 and v is v0 for (k, v), (k0, v0) in zip(pairs, value.items(), strict=True)):
            return value
        return dict(pairs)
    return value
