"""Shared fixtures: real database connections per dialect, mirror tables, hypothesis profiles.

Database URLs come from the environment with the project machines' defaults:
REPLICATION_TEST_POSTGRES_URL (postgresql://postgres@127.0.0.1:5432/test) and
REPLICATION_TEST_MYSQL_URL (mysql://root@127.0.0.1:3306/test). When a default
server does not answer and a Docker engine does, a testcontainers container
stands in for it for the session (see :mod:`tests.databases`). A server that
is not there skips its tests with the reason and what it takes to provide one,
except under CI (CI set), where it fails them: CI must never pass by skipping.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings

from contracts import Customer, Product  # importing them registers the example contracts
from replication.contracts import ContractRegistry
from replication.manifest import Manifest, MirrorDeclaration, load_manifest
from replication.mirror.render import statements_for
from replication.mirror.statements import MirrorStatements
from replication.mirror.tables import mirror_table
from tests import databases
from tests.databases import Database, connect

ROOT = Path(__file__).resolve().parent.parent

settings.register_profile(
    "default",
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "thorough",
    max_examples=int(os.environ.get("REPLICATION_THOROUGH_EXAMPLES", "3000")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

DIALECTS = ["sqlite", "postgresql", "mysql"]


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, find the servers once, before the workers start.

    The workers inherit a started container's URL through the environment, so
    the session shares one container per server instead of one per worker.
    """
    controller = not hasattr(config, "workerinput")
    if controller and getattr(config.option, "numprocesses", None):
        for server in databases.SERVERS:
            databases.resolution(server)


GROUPS = ("unit", "integration", "e2e")
"""The folders the tests are grouped in, each also a marker (``pytest -m "not e2e"``)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its group, the folder it sits in under ``tests``."""
    for item in items:
        group = item.path.parent.name
        if group in GROUPS:
            item.add_marker(group)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop the containers started for this session, if any."""
    databases.stop_containers()


@pytest.fixture
def examples() -> ContractRegistry:
    """A registry holding exactly the example contracts."""
    registry = ContractRegistry()
    registry.register(Customer)
    registry.register(Product)
    return registry


@pytest.fixture(scope="session")
def orders_manifest() -> Manifest:
    """The example consumer's manifest (mirrors crm.customer and catalog.product)."""
    return load_manifest(ROOT / "examples" / "orders" / "replication.yaml")


@pytest.fixture(params=DIALECTS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A real database of each dialect, reachable or skipped (failed under CI) with a reason."""
    db = connect(request.param, tmp_path)
    try:
        yield db
    finally:
        db.close()


def create_mirror(db: Database, declaration: MirrorDeclaration) -> MirrorStatements:
    """Drop and create the declaration's mirror table; return its statements."""
    table = mirror_table(declaration)
    engine = sa.create_engine(db.sqlalchemy_url, poolclass=sa.pool.NullPool)
    try:
        table.drop(engine, checkfirst=True)
        table.create(engine)
    finally:
        engine.dispose()
    return statements_for(declaration, db.dialect)


def fetch_all(db: Database, sql: str) -> list[tuple[Any, ...]]:
    """Run a query on a fresh cursor and return every row."""
    cursor = db.connection.cursor()
    try:
        cursor.execute(sql)
        return [tuple(row) for row in cursor.fetchall()]
    finally:
        cursor.close()
