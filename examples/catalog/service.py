"""The catalog business line: owns products, and records each change explicitly.

Where crm lets the ORM integration write its events, catalog uses plain
SQLAlchemy Core and calls ``record_upsert`` / ``record_delete`` in the same
transaction as each change, bumping the product's version itself.
"""

from __future__ import annotations

from decimal import Decimal

import sqlalchemy as sa

from contracts import Product
from replication.outbox import outbox_table
from replication.outbox.record import record_delete, record_upsert
from replication.sync.source import OwnerSource

metadata = sa.MetaData()
products = sa.Table(
    "catalog_products",
    metadata,
    sa.Column("sku", sa.String(64), primary_key=True),
    sa.Column("title", sa.String(300), nullable=False),
    sa.Column("price", sa.Numeric(10, 2), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("stock", sa.Integer, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
)


product_source = OwnerSource(Product, products, version="version")
"""Where backfills and reconciles read catalog's products (named in its manifest)."""


def create_schema(engine: sa.Engine) -> None:
    """catalog's tables and its outbox (Alembic does this in production)."""
    metadata.create_all(engine)
    outbox_table().create(engine, checkfirst=True)


def save_product(
    conn: sa.Connection, sku: str, title: str, price: Decimal, *, active: bool, stock: int
) -> int:
    """Insert or change a product and record its change event; returns its new version."""
    current = conn.execute(
        sa.select(products.c.version).where(products.c.sku == sku).with_for_update()
    ).scalar_one_or_none()
    values = {"title": title, "price": price, "active": active, "stock": stock}
    if current is None:
        version = 1
        conn.execute(products.insert().values(sku=sku, version=version, **values))
    else:
        version = current + 1
        conn.execute(
            products.update().where(products.c.sku == sku).values(version=version, **values)
        )
    state = Product(sku=sku, title=title, price=price, active=active, stock=stock)
    record_upsert(conn, state, version)
    return version


def delete_product(conn: sa.Connection, sku: str) -> bool:
    """Delete a product and record its deletion (at the next version); False if absent."""
    current = conn.execute(
        sa.select(products.c.version).where(products.c.sku == sku).with_for_update()
    ).scalar_one_or_none()
    if current is None:
        return False
    conn.execute(products.delete().where(products.c.sku == sku))
    record_delete(conn, Product, sku, current + 1)
    return True
