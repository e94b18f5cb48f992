"""Contracts owned by the catalog business line."""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field

from replication.contracts import Contract


class Product(Contract, entity="catalog.product", version=1, key="sku"):
    """A product the company sells, as catalog publishes it."""

    sku: str = Field(min_length=1, max_length=64, pattern=r"^[A-Z0-9][A-Z0-9-]*$")
    title: str = Field(min_length=1, max_length=300)
    price: Decimal = Field(max_digits=10, decimal_places=2, ge=0)
    active: bool
    stock: int = Field(ge=0)
