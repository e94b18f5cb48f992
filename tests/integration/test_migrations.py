"""Alembic migrations of a service's tables on PostgreSQL and MariaDB, through the command."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from replication.manifest import load_manifest
from replication.migrations import service_metadata
from tests.owners import engine_for
from tests.paths import ROOT


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "replication.cli", "migrations", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(params=["postgresql", "mysql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    engine = engine_for(request.param, tmp_path)
    with engine.begin() as conn:
        for service in ("orders", "crm"):
            manifest = load_manifest(ROOT / "examples" / service / "replication.yaml")
            for table in service_metadata(manifest).sorted_tables:
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {table.name}"))
            conn.execute(sa.text(f"DROP TABLE IF EXISTS alembic_version_{service}"))
    yield engine
    engine.dispose()


def test_generate_upgrade_check_and_downgrade_an_owner_and_a_consumer(
    database: sa.Engine, tmp_path: Path
) -> None:
    url = database.url.render_as_string(False)
    for service, tables in (
        ("orders", {"customer_mirror", "product_mirror"}),
        ("crm", {"replication_outbox"}),
    ):
        versions = tmp_path / service
        common = ("--service", service, "--url", url, "--versions", str(versions))
        assert run("generate", *common, "-m", "create tables").returncode == 0
        [revision] = versions.glob("*.py")
        assert "op.create_table" in revision.read_text()

        assert run("upgrade", *common).returncode == 0
        assert tables <= set(sa.inspect(database).get_table_names())
        checked = run("check", *common)
        assert checked.returncode == 0, checked.stderr
        assert f"{service}: the database matches the declarations" in checked.stdout

    if database.dialect.name == "postgresql":
        with database.connect() as conn:
            triggers = conn.execute(
                sa.text(
                    "SELECT tgname FROM pg_trigger WHERE tgname = 'replication_outbox_notify' "
                    "AND tgrelid = 'public.replication_outbox'::regclass"
                )
            ).all()
        assert len(triggers) == 1

    common = ("--service", "crm", "--url", url, "--versions", str(tmp_path / "crm"))
    assert run("downgrade", *common, "base").returncode == 0
    assert "replication_outbox" not in sa.inspect(database).get_table_names()


def test_check_fails_readably_when_a_declaration_changed_without_a_migration(
    database: sa.Engine, tmp_path: Path
) -> None:
    url = database.url.render_as_string(False)
    services = tmp_path / "services"
    shutil.copytree(
        ROOT / "examples", services, ignore=shutil.ignore_patterns("*.py", "__pycache__")
    )
    orders = services / "orders" / "replication.yaml"
    orders.write_text(
        orders.read_text().replace(
            "fields: [sku, title, price, active, stock]", "fields: [sku, title]"
        )
    )
    common = (
        *("--service", "orders", "--url", url),
        *("--versions", str(tmp_path / "v"), "--manifests", str(services)),
    )
    assert run("generate", *common, "-m", "create").returncode == 0
    assert run("upgrade", *common).returncode == 0
    orders.write_text(
        orders.read_text().replace("fields: [sku, title]", "fields: [sku, title, stock]")
    )

    checked = run("check", *common)

    assert checked.returncode == 5
    assert "the database differs from the declarations" in checked.stdout
    assert "column product_mirror.stock (BIGINT) is declared but missing" in checked.stdout
