"""``replication migrations``: Alembic's refusals as error lines, what a command reached, and
differences described in words, on SQLite, PostgreSQL and MariaDB.

Each test works in a schema (PostgreSQL) or database (MariaDB) of its own, so
it shares no table with other tests.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from replication.cli import EXIT_INVALID, EXIT_OK
from replication.dburl import with_search_path
from replication.migrations import describe_difference
from tests.test_outbox import engine_for

ROOT = Path(__file__).resolve().parent.parent
NARROW = "fields: [sku, title]"
WIDE = "fields: [sku, title, stock]"


@dataclass
class Service:
    """The example consumer ``orders`` in a temporary folder, migrated in its own database."""

    url: str
    engine: sa.Engine
    manifests: Path
    versions: Path

    def run(self, command: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                *(sys.executable, "-m", "replication.cli", "migrations", command, *args),
                *("--service", "orders", "--url", self.url, "--versions", str(self.versions)),
                *("--manifests", str(self.manifests)),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )

    def ok(self, command: str, *args: str) -> str:
        done = self.run(command, *args)
        assert done.returncode == EXIT_OK, done.stdout + done.stderr
        return done.stdout

    def declare(self, fields: str) -> None:
        """The product mirror's fields."""
        manifest = self.manifests / "orders" / "replication.yaml"
        text = manifest.read_text()
        for old in (NARROW, WIDE, "fields: [sku, title, price, active, stock]"):
            text = text.replace(old, fields)
        manifest.write_text(text)

    def revisions(self) -> dict[str, str]:
        """Each revision file's text by its revision id."""
        return {p.name.split("_")[0]: p.read_text() for p in self.versions.glob("*.py")}


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Service]:
    admin = engine_for(request.param, tmp_path)
    name = f"migration_commands_{uuid.uuid4().hex[:12]}"
    if admin.dialect.name == "postgresql":
        url = with_search_path(admin.url.render_as_string(False), name)
        statement, drop = f"CREATE SCHEMA {name}", f"DROP SCHEMA {name} CASCADE"
    elif admin.dialect.name == "mysql":
        url = admin.url.set(database=name).render_as_string(False)
        statement, drop = f"CREATE DATABASE {name}", f"DROP DATABASE {name}"
    else:
        url, statement, drop = admin.url.render_as_string(False), "", ""
    if statement:
        with admin.begin() as connection:
            connection.execute(sa.text(statement))
    manifests = tmp_path / "services"
    shutil.copytree(
        ROOT / "examples", manifests, ignore=shutil.ignore_patterns("*.py", "__pycache__")
    )
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        yield Service(url, engine, manifests, tmp_path / "versions")
    finally:
        engine.dispose()
        if drop:
            with admin.begin() as connection:
                connection.execute(sa.text(drop))
        admin.dispose()


def test_downgrade_and_upgrade_say_the_revision_they_reached(service: Service) -> None:
    service.declare(NARROW)
    service.ok("generate", "-m", "create")
    [first] = service.revisions()
    assert service.ok("upgrade") == f"orders: upgraded to {first}\n"
    service.declare(WIDE)
    service.ok("generate", "-m", "stock")
    [second] = set(service.revisions()) - {first}
    assert service.ok("upgrade") == f"orders: upgraded to {second}\n"

    once = service.ok("downgrade", "-1")
    twice = service.ok("downgrade", "-1")

    assert once == f"orders: downgraded to {first}\n"
    assert twice == "orders: downgraded to base\n"
    assert service.ok("upgrade", "+1") == f"orders: upgraded to {first}\n"


def test_generate_refuses_when_the_database_matches_and_writes_nothing(service: Service) -> None:
    service.ok("generate", "-m", "create")
    service.ok("upgrade")
    before = service.revisions()

    done = service.run("generate", "-m", "nothing")

    assert done.returncode == EXIT_INVALID
    nothing = "error: nothing to generate: the database matches the declarations"
    assert done.stderr.strip() == nothing
    assert service.revisions() == before


def test_alembic_refusals_are_error_lines_that_exit_1(service: Service) -> None:
    refused = {
        "an unknown revision": service.run("upgrade", "nosuchrev"),
        "a step below base": service.run("downgrade", "-1"),
    }
    service.ok("generate", "-m", "create")
    refused["a database behind its head"] = service.run("generate", "-m", "again")
    [(revision, text)] = service.revisions().items()
    # A second revision on the same parent: two heads.
    (service.versions / "feedfacecafe_branch.py").write_text(
        text.replace(f"revision: str = '{revision}'", "revision: str = 'feedfacecafe'")
    )
    refused["two heads"] = service.run("upgrade")

    for what, done in refused.items():
        assert done.returncode == EXIT_INVALID, what
        assert "Traceback" not in done.stderr, what
    errors = {what: done.stderr.strip() for what, done in refused.items()}
    assert errors == {
        "an unknown revision": "error: Can't locate revision identified by 'nosuchrev'",
        "a step below base": "error: Relative revision -1 didn't produce 1 migrations",
        "a database behind its head": "error: Target database is not up to date.",
        "two heads": errors["two heads"],
    }
    assert errors["two heads"].startswith("error: Multiple head revisions are present")


def test_check_describes_an_index_the_declarations_lack_in_words(service: Service) -> None:
    service.ok("generate", "-m", "create")
    service.ok("upgrade")
    with service.engine.begin() as connection:
        connection.execute(sa.text("CREATE INDEX ix_extra ON product_mirror (title)"))

    done = service.run("check")

    assert done.returncode == EXIT_INVALID
    assert "index ix_extra on product_mirror (title) exists but is no longer declared" in (
        done.stderr
    )
    assert "remove_index" not in done.stderr


def test_an_index_declared_but_missing_is_described_in_words() -> None:
    declared = sa.MetaData()
    sa.Table(
        "ledger",
        declared,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("code", sa.String(10)),
        sa.Index("ix_ledger_code", "code", "id", unique=True),
    )
    engine = sa.create_engine("sqlite://")
    with engine.begin() as connection:
        connection.execute(
            sa.text("CREATE TABLE ledger (id INTEGER NOT NULL PRIMARY KEY, code VARCHAR(10))")
        )
        differences = compare_metadata(MigrationContext.configure(connection), declared)

    assert [describe_difference(d) for d in differences] == [
        "unique index ix_ledger_code on ledger (code, id) is declared but missing"
    ]
