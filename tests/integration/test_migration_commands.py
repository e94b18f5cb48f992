"""``replication migrations``: Alembic's refusals as error lines, what a command reached, and
differences described in words, on SQLite, PostgreSQL and MariaDB.

Each test works in a schema (PostgreSQL) or database (MariaDB) of its own, so
it shares no table with other tests.
"""

from __future__ import annotations

import json
import os
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

from replication.cli import ExitCode
from replication.dburl import with_search_path
from replication.migrations import describe_difference
from tests.owners import engine_for
from tests.paths import ROOT

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
        assert done.returncode == ExitCode.OK, done.stdout + done.stderr
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

    assert done.returncode == ExitCode.INVALID
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
        assert done.returncode == ExitCode.INVALID, what
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

    assert done.returncode == ExitCode.DIFFERS
    assert "index ix_extra on product_mirror (title) exists but is no longer declared" in (
        done.stdout
    )
    assert "remove_index" not in done.stdout


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


# -- current, history, stamp and offline --sql, on PostgreSQL ---------------------------

ON_POSTGRESQL = pytest.mark.parametrize("service", ["postgresql"], indirect=True)


def tables(service: Service) -> set[str]:
    return set(sa.inspect(service.engine).get_table_names())


@ON_POSTGRESQL
def test_current_says_base_then_the_revision_the_database_is_at(service: Service) -> None:
    service.declare(NARROW)
    service.ok("generate", "-m", "create")
    [first] = service.revisions()
    assert service.ok("current") == "orders: base (no revision applied)\n"
    assert json.loads(service.ok("current", "--json")) == {"service": "orders", "current": []}

    service.ok("upgrade")

    assert service.ok("current") == f"{first} (head)\n"
    [at] = json.loads(service.ok("current", "--json"))["current"]
    assert (at["revision"], at["message"], at["head"], at["current"]) == (
        first,
        "create",
        True,
        True,
    )
    assert first in service.ok("current", "--verbose")


@ON_POSTGRESQL
def test_history_lists_newest_first_and_marks_the_current_one(service: Service) -> None:
    service.declare(NARROW)
    service.ok("generate", "-m", "create")
    service.ok("upgrade")
    service.declare(WIDE)
    service.ok("generate", "-m", "stock")
    first, second = (
        r["revision"] for r in reversed(json.loads(service.ok("history", "--json"))["revisions"])
    )

    plain = service.ok("history").splitlines()
    marked = service.ok("history", "--indicate-current").splitlines()
    as_json = json.loads(service.ok("history", "--json", "-i"))["revisions"]

    assert plain == [f"{first} -> {second} (head), stock", f"<base> -> {first}, create"]
    assert marked == [f"{first} -> {second} (head), stock", f"<base> -> {first} (current), create"]
    assert [(r["revision"], r["down_revisions"], r["current"]) for r in as_json] == [
        (second, [first], False),
        (first, [], True),
    ]
    assert service.ok("history", "-r", f"{second}:").splitlines() == plain[:1]


@ON_POSTGRESQL
def test_history_without_a_database_reads_the_revisions_alone(service: Service) -> None:
    service.ok("generate", "-m", "create")
    [first] = service.revisions()
    done = subprocess.run(
        [
            *(sys.executable, "-m", "replication.cli", "migrations", "history"),
            *("--service", "orders", "--versions", str(service.versions)),
            *("--manifests", str(service.manifests)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "ORDERS_DATABASE_URL"},
    )
    assert done.returncode == ExitCode.OK, done.stderr
    assert done.stdout == f"<base> -> {first} (head), create\n"


@ON_POSTGRESQL
def test_stamp_records_a_revision_and_runs_nothing(service: Service) -> None:
    service.ok("generate", "-m", "create")
    [first] = service.revisions()

    assert service.ok("stamp", "head") == f"orders: stamped to {first}\n"
    assert "customer_mirror" not in tables(service)
    assert service.ok("current") == f"{first} (head)\n"
    # The version table says head, the tables are missing: check tells.
    assert service.run("check").returncode == ExitCode.DIFFERS
    stamped = json.loads(service.ok("stamp", "base", "--json"))
    assert stamped == {"service": "orders", "command": "stamp", "current": []}
    service.ok("stamp", first)
    assert service.ok("stamp", "base", "--purge") == "orders: stamped to base\n"
    sql = service.ok("stamp", "head", "--sql")
    assert f"INSERT INTO alembic_version_orders (version_num) VALUES ('{first}')" in sql
    assert service.ok("current") == "orders: base (no revision applied)\n"


@ON_POSTGRESQL
def test_upgrade_sql_prints_reviewable_ddl_that_a_dba_can_run(service: Service) -> None:
    service.ok("generate", "-m", "create")
    [first] = service.revisions()

    done = service.run("upgrade", "--sql")

    assert done.returncode == ExitCode.OK, done.stderr
    sql = done.stdout
    assert "CREATE TABLE customer_mirror" in sql
    assert "CREATE TABLE product_mirror" in sql
    assert f"INSERT INTO alembic_version_orders (version_num) VALUES ('{first}')" in sql
    assert "upgraded" not in sql  # only SQL on stdout
    assert f"Running upgrade  -> {first}, create" in done.stderr
    assert not {"customer_mirror", "product_mirror"} & tables(service)
    assert service.ok("current") == "orders: base (no revision applied)\n"
    # Run as reviewed, by hand, on a database of its own (generate made the version table
    # in this one): that database is then where upgrade would have taken it.
    production = f"reviewed_{uuid.uuid4().hex[:12]}"
    with service.engine.begin() as connection:
        connection.execute(sa.text(f"CREATE SCHEMA {production}"))
    server = sa.make_url(service.url).difference_update_query(["options"])
    url = with_search_path(server.render_as_string(False), production)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        raw = engine.raw_connection()
        try:
            raw.cursor().execute(sql)
            raw.commit()
        finally:
            raw.close()
        reviewed = Service(url, engine, service.manifests, service.versions)
        assert reviewed.ok("current") == f"{first} (head)\n"
        assert reviewed.ok("check") == "orders: the database matches the declarations\n"
    finally:
        engine.dispose()
        with service.engine.begin() as connection:
            connection.execute(sa.text(f"DROP SCHEMA {production} CASCADE"))
    down = service.ok("downgrade", f"{first}:base", "--sql")
    assert "DROP TABLE customer_mirror" in down
    assert "DELETE FROM alembic_version_orders" in down


@ON_POSTGRESQL
def test_upgrade_sql_of_an_owner_carries_the_outbox_notify_trigger(service: Service) -> None:
    owner = (
        "--service",
        "crm",
        "--url",
        service.url,
        "--versions",
        str(service.versions.parent / "crm"),
        "--manifests",
        str(service.manifests),
    )

    def crm(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "replication.cli", "migrations", *args, *owner],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )

    assert crm("generate", "-m", "outbox").returncode == ExitCode.OK
    done = crm("upgrade", "--sql")

    assert done.returncode == ExitCode.OK, done.stderr
    assert "CREATE TABLE replication_outbox" in done.stdout
    assert "CREATE TRIGGER" in done.stdout
    assert "replication_outbox" not in tables(service)
