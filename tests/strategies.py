"""Hypothesis strategies for contract instances of the example entities."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from hypothesis import strategies as st

from contracts import Address, Customer, Tier

# Any text a database stores faithfully: no NUL, no lone surrogates. It includes
# quotes, backslashes, tabs, newlines and emoji, which the COPY path must escape.
safe_text = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
    max_size=20,
)
offsets = st.integers(min_value=-12, max_value=14).map(lambda h: dt.timezone(dt.timedelta(hours=h)))
moments = st.datetimes(
    min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1), timezones=offsets
)
addresses = st.builds(
    Address,
    street=safe_text,
    city=safe_text,
    postal_code=st.from_regex(r"[0-9]{5}", fullmatch=True),
    country=st.sampled_from(["FR", "DE", "US", "JP"]),
)


def customers(key: uuid.UUID) -> st.SearchStrategy[Customer]:
    """Customer states for one key."""
    return st.builds(
        Customer,
        id=st.just(key),
        name=safe_text.filter(lambda s: 1 <= len(s) <= 200),
        email=st.integers(0, 10_000).map(lambda n: f"user{n}@example.com"),
        tier=st.sampled_from(list(Tier)),
        credit_limit=st.decimals(
            min_value=Decimal(0), max_value=Decimal("9999999999.99"), places=2
        ),
        created_at=moments,
        tags=st.lists(safe_text, max_size=3),
        address=addresses,
        phone=st.none() | st.from_regex(r"\+[0-9]{6,12}", fullmatch=True),
    )
