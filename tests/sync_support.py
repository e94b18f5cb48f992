"""Owners' tables and consumers' mirrors filled and drifted on purpose, for sync tests."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from examples.catalog import service as catalog
from examples.crm import service as crm
from replication.events import ChangeEvent, deleted
from replication.manifest import MirrorDeclaration, load_manifest
from replication.mirror import apply_changes
from replication.mirror.render import statements_for
from replication.mirror.tables import mirror_table
from tests.owners import engine_for

ROOT = Path(__file__).resolve().parent.parent
BACKFILL = ("backfill", "--entity", "crm.customer", "--consumer", "orders")
RECONCILE = ("reconcile", "--entity", "crm.customer", "--consumer", "orders")
ORDERS = load_manifest(ROOT / "examples" / "orders" / "replication.yaml")
CUSTOMERS = ORDERS.mirror("crm.customer")
PRODUCTS = ORDERS.mirror("catalog.product")


@contextmanager
def fresh_engine(dialect: str, tmp_path: Path) -> Iterator[sa.Engine]:
    """An engine of ``dialect`` with the owners' and the mirrors' tables dropped around it."""
    engine = engine_for(dialect, tmp_path)

    def drop() -> None:
        with engine.begin() as conn:
            for table in ("crm_customers", "catalog_products", "customer_mirror", "product_mirror"):
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))

    drop()
    crm.Base.metadata.create_all(engine)
    catalog.metadata.create_all(engine)
    metadata = sa.MetaData()
    for declaration in ORDERS.mirrors:
        mirror_table(declaration, metadata)
    metadata.create_all(engine)
    try:
        yield engine
    finally:
        drop()
        engine.dispose()


def customer_row(rng: random.Random, version: int) -> dict[str, Any]:
    """A crm_customers row."""
    key = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    return {
        "id": key,
        "name": f"Customer {key[:8]}",
        "email": f"{key[:8]}@example.com",
        "tier": rng.choice(["bronze", "silver", "gold", "platinum"]),
        "credit_limit": Decimal(rng.randrange(0, 10**6)) / 100,
        "created_at": dt.datetime(2026, 1, 1, 12, 0, rng.randrange(60), 123456, tzinfo=dt.UTC),
        "tags": rng.sample(["b2b", "vip", "new", "ö ü \u6f22"], rng.randrange(3)),
        "street": "1 Main St",
        "city": rng.choice(["Lyon", "Zürich", "O'Hare"]),
        "postal_code": "69001",
        "country": "FR",
        "phone": rng.choice([None, "+33 1 23 45 67 89"]),
        "version": version,
    }


def product_row(rng: random.Random, n: int, version: int) -> dict[str, Any]:
    """A catalog_products row."""
    return {
        "sku": f"SKU-{n:06d}",
        "title": f"Thing {n} \u2013 \u00e9dition",
        "price": Decimal(rng.randrange(0, 10**6)) / 100,
        "active": rng.random() < 0.8,
        "stock": rng.randrange(0, 10**9),
        "version": version,
    }


def fill(engine: sa.Engine, customers: int, products: int, seed: int = 7) -> None:
    """Owners' rows, and mirrors holding exactly the same, written by the real apply."""
    rng = random.Random(seed)
    customer_rows = [customer_row(rng, rng.randrange(1, 6)) for _ in range(customers)]
    product_rows = [product_row(rng, n, rng.randrange(1, 6)) for n in range(products)]
    with engine.begin() as conn:
        if customer_rows:
            conn.execute(crm.customers.insert(), customer_rows)
        if product_rows:
            conn.execute(catalog.products.insert(), product_rows)
    mirror_owner(engine)


def owner_events(engine: sa.Engine, declaration: MirrorDeclaration) -> list[ChangeEvent]:
    """Every owner row of ``declaration``'s entity as a snapshot event at its version."""
    source = crm.customer_source if declaration is CUSTOMERS else catalog.product_source
    with engine.connect() as conn:
        return [source.snapshot(row) for row in conn.execute(source.select())]


def mirror_owner(engine: sa.Engine) -> None:
    """Apply every owner row to its mirror."""
    for declaration in ORDERS.mirrors:
        apply(engine, declaration, owner_events(engine, declaration))


def apply(engine: sa.Engine, declaration: MirrorDeclaration, events: list[ChangeEvent]) -> None:
    """Write ``events`` into ``declaration``'s mirror through the real apply."""
    statements = statements_for(declaration, engine.dialect.name)
    with engine.begin() as conn:
        for start in range(0, len(events), 500):
            apply_changes(conn, statements, events[start : start + 500])


def tombstone(engine: sa.Engine, declaration: MirrorDeclaration, key: Any, version: int) -> None:
    """A delete applied to the mirror."""
    apply(engine, declaration, [deleted(declaration.contract, key, version)])
