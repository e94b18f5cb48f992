"""Valid contract instances, plain and holding the values naive writers mangle."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from contracts import Address, Customer, Tier

T0 = dt.datetime(2024, 5, 17, 9, 30, tzinfo=dt.UTC)

AWKWARD_TEXT = [
    "tab\there",
    "new\nline",
    "carriage\rreturn",
    "crlf\r\nend",
    "back\\slash",
    "\\N",
    "\\.",
    "\\",
    "trailing backslash \\",
    'it\'s "quoted" `both` ways',
    "emoji 🦄👍🏽 and 中文",
    "'); DROP TABLE x; --",
    "%s %(name)s ? :1 $1",
    "  padded  ",
    "\x0b\x0c\x1f\x7f\u2028\u200f",
    "🦄" * 200,
]
"""Text a naive writer mangles: COPY escapes, SQL fragments, placeholders, astral characters."""

OFFSETS = [
    dt.timezone(dt.timedelta(hours=5, minutes=45)),
    dt.timezone(dt.timedelta(hours=-9, minutes=-30)),
    dt.timezone(dt.timedelta(hours=14)),
    dt.timezone(dt.timedelta(hours=-12)),
    dt.timezone(dt.timedelta(hours=5, minutes=30, seconds=15)),
    dt.UTC,
]


def customer(number: int, suffix: str = "", **changes: Any) -> Customer:
    """A valid customer whose id is ``UUID(int=number)``; ``changes`` override fields."""
    values: dict[str, Any] = {
        "id": uuid.UUID(int=number),
        "name": f"Customer {number}{suffix}",
        "email": f"customer{number}@example.com",
        "tier": Tier.SILVER,
        "credit_limit": Decimal("1500.00"),
        "created_at": T0,
        "tags": ["vip"],
        "address": Address(street="1 Main St", city="Lyon", postal_code="69001", country="FR"),
        "phone": None,
    }
    values.update(changes)
    return Customer(**values)


def awkward_customers() -> list[Customer]:
    """Customers whose every text, date and number field holds a hard value."""
    limits = [Decimal("9999999999.99"), Decimal("0.00"), Decimal("0.01"), Decimal("1E+2")]
    result = []
    for n, text in enumerate(AWKWARD_TEXT):
        result.append(
            customer(
                n + 1,
                name=text,
                tier=list(Tier)[n % len(Tier)],
                credit_limit=limits[n % len(limits)],
                created_at=dt.datetime(
                    1970 + 7 * n, 1 + n % 12, 28, 23, 59, 59, 999_999 - n
                ).replace(tzinfo=OFFSETS[n % len(OFFSETS)]),
                tags=[text, *AWKWARD_TEXT[:3], ""],
                address=Address(street=text, city=text[:40], postal_code=text, country="JP"),
                phone=text,
            )
        )
    return result
