"""The crm business line: owns customers, publishes every change through the outbox.

Its code is ordinary SQLAlchemy ORM. One declaration (``tracker.track``) ties
the ``CustomerRow`` model to the ``crm.customer`` contract; from then on each
flush, in any session, writes the change events in the same transaction as
the rows, with the row's ``version`` column as the per-key version.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from contracts import Address, Customer, Tier
from replication.outbox import outbox_table
from replication.outbox.orm import OutboxTracker
from replication.sync.source import OwnerSource
from replication.sync.sql import json_object


class Base(DeclarativeBase):
    """crm's own tables."""


class CustomerRow(Base):
    """crm's customer table: the source of truth."""

    __tablename__ = "crm_customers"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    email: Mapped[str] = mapped_column(sa.String(320))
    tier: Mapped[str] = mapped_column(sa.String(16))
    credit_limit: Mapped[Decimal] = mapped_column(sa.Numeric(12, 2))
    # Microseconds on MySQL/MariaDB too (their DATETIME drops them unless asked):
    # the published state must be the stored state.
    created_at: Mapped[dt.datetime] = mapped_column(
        sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
    )
    tags: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    street: Mapped[str] = mapped_column(sa.String(200))
    city: Mapped[str] = mapped_column(sa.String(100))
    postal_code: Mapped[str] = mapped_column(sa.String(20))
    country: Mapped[str] = mapped_column(sa.String(2))
    phone: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)
    version: Mapped[int] = mapped_column(sa.Integer, nullable=False)

    __mapper_args__: dict[str, Any] = {"version_id_col": version}


def to_contract(row: CustomerRow) -> Customer:
    """The published state of a customer row."""
    created = row.created_at
    if created.tzinfo is None:  # SQLite and MySQL hand back UTC without an offset
        created = created.replace(tzinfo=dt.UTC)
    return Customer(
        id=uuid.UUID(str(row.id)),  # text here; a native UUID in a Uuid column
        name=row.name,
        email=row.email,
        tier=Tier(row.tier),
        credit_limit=row.credit_limit,
        created_at=created,
        tags=list(row.tags or []),
        address=Address(
            street=row.street, city=row.city, postal_code=row.postal_code, country=row.country
        ),
        phone=row.phone,
    )


tracker = OutboxTracker()
tracker.track(CustomerRow, Customer, to_contract=to_contract)

customers = cast(sa.Table, CustomerRow.__table__)
"""crm's customer table as a Core table."""


def address_of(table: sa.Table) -> json_object:
    """The contract's address, in SQL, from a customer table's four address columns."""
    return json_object(
        street=table.c.street,
        city=table.c.city,
        postal_code=table.c.postal_code,
        country=table.c.country,
    )


customer_source = OwnerSource(
    Customer,
    customers,
    version="version",
    columns={"address": address_of(customers)},
    to_contract=to_contract,
)
"""Where backfills and reconciles read crm's customers (named in its manifest)."""


def create_schema(engine: sa.Engine) -> None:
    """crm's tables and its outbox (Alembic does this in production)."""
    Base.metadata.create_all(engine)
    outbox_table().create(engine, checkfirst=True)


def sessions(engine: sa.Engine) -> sessionmaker[Session]:
    """crm's sessions: every flush of a CustomerRow writes its change event."""
    return sessionmaker(engine, expire_on_commit=False)
