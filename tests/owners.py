"""An owner's database for the tests: an engine per dialect, a business table, a sale.

``sell`` is an owner's business transaction: it upserts a product row and
records its change event in the outbox, in one transaction.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

from contracts import Product
from replication.events import ChangeEvent
from replication.outbox import outbox_table, record_delete, record_upsert
from tests.databases import POSTGRES_URL, mysql_sqlalchemy_url, unavailable


def engine_for(dialect: str, tmp_path: Path) -> sa.Engine:
    """A SQLAlchemy engine of ``dialect`` whose server answers (skipped, or failed in CI)."""
    if dialect == "sqlite":
        url = f"sqlite:///{tmp_path / 'owner.sqlite'}"
    elif dialect == "postgresql":
        url = POSTGRES_URL.replace("postgresql:", "postgresql+psycopg2:", 1)
    else:
        url = mysql_sqlalchemy_url()
    engine = sa.create_engine(url, pool_pre_ping=True)
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as exc:
        unavailable(f"{dialect} does not answer: {exc}")
    return engine


BUSINESS = sa.Table(
    "catalog_products",
    sa.MetaData(),
    sa.Column("sku", sa.String(64), primary_key=True),
    sa.Column("title", sa.String(300), nullable=False),
    sa.Column("stock", sa.Integer, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
)


def reset_owner(engine: sa.Engine) -> None:
    outbox = outbox_table()
    for table in (outbox, BUSINESS):
        table.drop(engine, checkfirst=True)
        table.create(engine)


def product(sku: str, stock: int) -> Product:
    return Product(sku=sku, title=f"Product {sku}", price=Decimal("9.99"), active=True, stock=stock)


def sell(engine: sa.Engine, sku: str, stock: int) -> ChangeEvent:
    """A business transaction: upsert the product row and record its change event."""
    with engine.begin() as conn:
        version = conn.execute(
            sa.select(BUSINESS.c.version).where(BUSINESS.c.sku == sku).with_for_update()
        ).scalar()
        if version is None:
            version = 1
            conn.execute(BUSINESS.insert().values(sku=sku, title=sku, stock=stock, version=1))
        else:
            version += 1
            conn.execute(
                BUSINESS.update().where(BUSINESS.c.sku == sku).values(stock=stock, version=version)
            )
        return record_upsert(conn, product(sku, stock), version)


def remove(engine: sa.Engine, sku: str) -> ChangeEvent:
    """A business transaction deleting a product: its row stays as the key's version
    counter (an owner's versions never go down, even across a delete and a re-create)."""
    with engine.begin() as conn:
        version = conn.execute(
            sa.select(BUSINESS.c.version).where(BUSINESS.c.sku == sku).with_for_update()
        ).scalar_one()
        conn.execute(BUSINESS.update().where(BUSINESS.c.sku == sku).values(version=version + 1))
        return record_delete(conn, Product, sku, version + 1)
