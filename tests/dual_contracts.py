"""Two major versions of one entity, published side by side (for the tests).

v2 splits the holder's name in two and adds a status v1 does not know; its
declared conversion gives v1 consumers the joined name and maps ``frozen`` to
the closest v1 status.
"""

from __future__ import annotations

import enum
from decimal import Decimal

from pydantic import Field

from replication.contracts import Contract
from replication.conversions import conversion


class Status(enum.StrEnum):
    """Status of an account in v1."""

    ACTIVE = "active"
    CLOSED = "closed"


class StatusV2(enum.StrEnum):
    """Status of an account in v2: a frozen account can be reopened."""

    ACTIVE = "active"
    FROZEN = "frozen"
    CLOSED = "closed"


class Account(Contract, entity="ledger.account", version=1, key="id"):
    """An account as ledger published it first."""

    id: str = Field(max_length=32)
    holder: str = Field(max_length=200)
    status: Status


class AccountV2(Contract, entity="ledger.account", version=2, key="id"):
    """An account in v2: the holder's name in two parts, a frozen status, a credit line."""

    id: str = Field(max_length=32)
    given_name: str = Field(max_length=100)
    family_name: str = Field(max_length=100)
    status: StatusV2
    credit: Decimal = Field(max_digits=12, decimal_places=2)


@conversion(AccountV2, Account)
def account_v2_to_v1(account: AccountV2) -> Account:
    """What a v1 consumer sees of a v2 account."""
    status = Status.ACTIVE if account.status == StatusV2.ACTIVE else Status.CLOSED
    return Account(
        id=account.id, holder=f"{account.given_name} {account.family_name}", status=status
    )
