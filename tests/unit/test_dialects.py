"""The dialect registry: a database the project has never heard of works by registering it.

The fourth dialect here, ``fakelite``, is SQLite under another name, reached
through a DB-API "driver" of its own (a thin wrapper of sqlite3 in a module
named ``fakelite``). Registering it is the only thing the tests do to the
project: rendering, the consumer's connection, the version-guarded apply,
the failures table and error verdicts then find it through the registry.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from contracts import Product
from replication.consumer.classify import DATA, TRANSIENT, classify
from replication.consumer.database import connect, spec_from_url, url_of
from replication.consumer.failures import Failure, read_failures, record_failures
from replication.consumer.failures_table import failures_table
from replication.dburl import dialect_of, driver_of
from replication.dialects import (
    Dialect,
    dialect_named,
    register,
    registered,
    unregister,
)
from replication.dialects.sqlite import SQLiteDialect
from replication.errors import ConfigurationError
from replication.events import deleted, upserted
from replication.manifest import Manifest
from replication.mirror import apply_changes
from replication.mirror.render import statements_for
from replication.mirror.statements import MirrorStatements
from replication.mirror.tables import mirror_table
from tests.paths import ROOT


class Connection:
    """The ``fakelite`` driver's connection: sqlite3's, under another module's name."""

    __module__ = "fakelite.dbapi"

    def __init__(self, path: str) -> None:
        import sqlite3

        self._inner = sqlite3.connect(path)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class IntegrityError(Exception):
    """The ``fakelite`` driver's refusal of a value."""

    __module__ = "fakelite.dbapi"


class OperationalError(Exception):
    """The ``fakelite`` driver's refusal of a statement."""

    __module__ = "fakelite.dbapi"


class FakeliteDialect(SQLiteDialect):
    """SQLite renamed, with a driver, a URL scheme and nothing else of its own."""

    name = "fakelite"
    drivers = ("fakelite",)
    schemes = {"fakelite": ""}
    dbapi_modules = {"": "fakelite"}

    def connect(self, endpoint: Any, **_: Any) -> Connection:
        """A connection of the ``fakelite`` driver to the file ``endpoint.database``."""
        return Connection(endpoint.database)


@pytest.fixture
def fakelite() -> Iterator[Dialect]:
    """The fourth dialect, registered for one test."""
    dialect = register(FakeliteDialect())
    try:
        yield dialect
    finally:
        unregister(dialect)


@pytest.fixture
def products(tmp_path: Path, orders_manifest: Manifest) -> Path:
    """A database file holding the product mirror and the failures table (made by SQLAlchemy's
    SQLite: the fourth dialect shares its DDL)."""
    path = tmp_path / "orders.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        mirror_table(orders_manifest.mirror("catalog.product")).create(engine)
        failures_table().create(engine)
    finally:
        engine.dispose()
    return path


def product(sku: str, title: str) -> Product:
    return Product(sku=sku, title=title, price=Decimal("9.90"), active=True, stock=3)


def mirror_rows(connection: Any) -> dict[str, tuple[Any, ...]]:
    cursor = connection.cursor()
    try:
        cursor.execute("SELECT sku, title, _version, _deleted FROM product_mirror")
        return {row[0]: tuple(row[1:]) for row in cursor.fetchall()}
    finally:
        cursor.close()


def test_a_registered_dialect_renders_applies_and_records_failures_by_name_alone(
    fakelite: Dialect, products: Path, orders_manifest: Manifest
) -> None:
    statements = statements_for(orders_manifest.mirror("catalog.product"), "fakelite")
    loaded = MirrorStatements.from_json(statements.to_json())
    spec = spec_from_url(f"fakelite:///{products}")
    connection = connect(spec)

    first = apply_changes(
        connection,
        loaded,
        [upserted(product("A", "Lamp"), 2), upserted(product("B", "Desk"), 1)],
    )
    again = apply_changes(
        connection,
        loaded,
        [upserted(product("A", "Old lamp"), 1), deleted(Product, "B", 3)],
    )
    connection.commit()
    record_failures(
        connection,
        "fakelite",
        [Failure("orders-q", "m-1", "permanent", "no such entity", 1, dead_lettered=True)],
    )
    connection.commit()

    assert (spec.dialect, spec.driver, dialect_of(f"fakelite:///{products}")) == (
        "fakelite",
        "fakelite",
        "fakelite",
    )
    assert url_of(spec) == f"fakelite:///{products}"
    assert (loaded.dialect, loaded.paramstyle_marker) == ("fakelite", "?")
    assert loaded.rendered_for("fakelite")
    assert not loaded.rendered_for("sqlite")
    assert (first.applied, first.stale) == (2, 0)
    assert (again.applied, again.deleted, again.stale) == (0, 1, 1)
    assert mirror_rows(connection) == {"A": ("Lamp", 2, 0), "B": (None, 3, 1)}
    assert read_failures(connection, "fakelite", "orders-q", ["m-1", "m-2"]) == {
        "m-1": ("no such entity", "permanent", 1)
    }
    connection.close()


def test_errors_of_a_registered_dialects_driver_get_its_verdicts(fakelite: Dialect) -> None:
    refused = classify(IntegrityError("NOT NULL constraint failed: product_mirror.sku"))
    pending = classify(OperationalError("no such column: note"), "orders")

    assert refused.kind == DATA
    assert refused.reason.startswith("database refused a value")
    assert pending.kind == TRANSIENT
    assert "replication migrations upgrade --service orders" in pending.reason


def test_statements_of_one_dialect_are_refused_on_another(
    fakelite: Dialect, products: Path, orders_manifest: Manifest
) -> None:
    statements = statements_for(orders_manifest.mirror("catalog.product"), "sqlite")
    connection = connect(spec_from_url(f"fakelite:///{products}"))

    with pytest.raises(ValueError, match="rendered for sqlite, the connection is fakelite"):
        apply_changes(connection, statements, [upserted(product("A", "Lamp"), 1)])
    connection.close()


def test_unregistered_the_dialect_is_unknown_again(orders_manifest: Manifest) -> None:
    dialect = register(FakeliteDialect())
    unregister(dialect)

    with pytest.raises(ConfigurationError, match="unsupported dialect 'fakelite'"):
        statements_for(orders_manifest.mirror("catalog.product"), "fakelite")
    assert dialect_of("fakelite:///x.db") is None
    assert driver_of("fakelite:///x.db") is None
    assert [d.name for d in registered()] == ["postgresql", "mysql", "sqlite"]


def test_a_dialect_claiming_anothers_driver_or_scheme_is_refused() -> None:
    class Impostor(SQLiteDialect):
        name = "impostor"

    with pytest.raises(ConfigurationError, match="driver sqlite3 is <SQLiteDialect sqlite>'s"):
        register(Impostor())
    assert [d.name for d in registered()] == ["postgresql", "mysql", "sqlite"]


def test_aliases_name_the_same_dialect() -> None:
    assert dialect_named("mariadb") is dialect_named("mysql")
    assert dialect_named("mariadb").name == "mysql"


def test_importing_the_dialects_imports_no_sqlalchemy_boto3_or_driver() -> None:
    script = textwrap.dedent(
        """
        import sys
        import replication.dialects
        from replication.consumer.classify import classify
        from replication.dburl import driver_of

        driver_of("postgresql://h/db")
        classify(ValueError("x"))
        heavy = ("sqlalchemy", "boto3", "psycopg2", "psycopg", "pymysql")
        print(sorted(m for m in heavy if m in sys.modules))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=False
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_no_module_outside_the_dialects_branches_on_a_database_name() -> None:
    """What differs per database is asked of its dialect, never decided by comparing names."""
    root = ROOT / "replication"
    names = "|".join(("postgresql", "mysql", "mariadb", "sqlite"))
    branch = re.compile(rf"""(dialect|\.name)\s*(==|!=|\bin\b)\s*\(?\s*["']({names})["']""")
    found = [
        f"{path.relative_to(root)}:{number}"
        for path in sorted(root.rglob("*.py"))
        if "dialects" not in path.relative_to(root).parts
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if branch.search(line)
    ]
    assert found == []


def test_the_outbox_asks_its_dialect_what_the_database_can_do() -> None:
    postgresql, mysql, sqlite = (dialect_named(n) for n in ("postgresql", "mariadb", "sqlite"))
    assert (postgresql.skip_locked, postgresql.aware_timestamps, postgresql.notifies) == (
        True,
        True,
        True,
    )
    assert (mysql.skip_locked, mysql.aware_timestamps, mysql.notifies) == (True, False, False)
    assert (sqlite.skip_locked, sqlite.outbox_driver_sql) == (False, False)
