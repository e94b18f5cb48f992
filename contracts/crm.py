"""Contracts owned by the crm business line."""

from __future__ import annotations

import enum
import uuid
from decimal import Decimal
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, EmailStr, Field

from replication.contracts import Contract, Pii


class Tier(enum.StrEnum):
    """Commercial tier of a customer."""

    BRONZE = "bronze"
    SILVER = "silver"
    GOLD = "gold"
    PLATINUM = "platinum"


class Address(BaseModel):
    """A postal address, carried whole (stored as JSON in mirrors)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    street: str
    city: str
    postal_code: str
    country: str = Field(min_length=2, max_length=2)


class Customer(Contract, entity="crm.customer", version=1, key="id"):
    """A customer of the company, as crm publishes it."""

    id: uuid.UUID
    name: str = Field(min_length=1, max_length=200)
    email: Annotated[EmailStr, Pii]
    tier: Tier
    credit_limit: Decimal = Field(max_digits=12, decimal_places=2, ge=0)
    created_at: AwareDatetime
    tags: list[str] = Field(default_factory=list)
    address: Address
    phone: Annotated[str | None, Pii] = None
