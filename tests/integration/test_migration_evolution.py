"""A mirror's schema evolving with its contract, on PostgreSQL and MariaDB.

The migrations commands run as processes with a throwaway contracts module;
the mirror is then written through the real apply path to show it works at
each step.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from replication import contracts as contracts_module
from replication.events import encode_event, upserted
from replication.manifest import load_manifest
from replication.mirror import apply_changes
from replication.mirror.render import statements_for
from tests.consumer_support import harness, sqs_record
from tests.consumer_support import rows as consumer_rows
from tests.databases import connect
from tests.owners import engine_for
from tests.paths import ROOT

CONTRACT = """
from pydantic import Field
from replication.contracts import Contract

class Parcel(Contract, entity="shipping.parcel", version=1, key="id"):
    id: int
    label: str = Field(max_length=50)
"""
WEIGHT = "    weight: int | None = None\n"
MANIFEST = """
service: stores
database:
  url_env: STORES_DATABASE_URL
mirrors:
  - entity: shipping.parcel
    version: 1
    table: parcel_mirror
    fields: [{fields}]
"""
TABLES = ("parcel_mirror", "replication_failures", "alembic_version_stores")


class Project:
    """A contracts module, a manifest and a versions folder in a temporary folder."""

    def __init__(self, tmp: Path, url: str) -> None:
        self.tmp = tmp
        self.url = url
        self.versions = tmp / "versions"
        (tmp / "stores").mkdir()

    def declare(self, contract: str, fields: str) -> None:
        (self.tmp / "shop_contracts.py").write_text(contract)
        (self.tmp / "stores" / "replication.yaml").write_text(MANIFEST.format(fields=fields))

    def run(self, command: str, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": f"{self.tmp}{os.pathsep}{ROOT}"}
        return subprocess.run(
            [
                *(sys.executable, "-m", "replication.cli", "--contracts", "shop_contracts"),
                *("migrations", command, *args, "--service", "stores", "--url", self.url),
                *("--versions", str(self.versions), "--manifests", str(self.tmp / "stores")),
            ],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )

    def ok(self, command: str, *args: str) -> str:
        done = self.run(command, *args)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def revisions(self) -> list[str]:
        return [p.read_text() for p in sorted(self.versions.glob("*.py"), key=os.path.getmtime)]

    def write_module(self) -> Any:
        """Import the declared contracts module afresh (as ``shop_contracts``)."""
        spec = importlib.util.spec_from_file_location(
            "shop_contracts", self.tmp / "shop_contracts.py"
        )
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        contracts_module.registry._contracts.pop(("shipping.parcel", 1), None)
        sys.modules["shop_contracts"] = module
        spec.loader.exec_module(module)
        return module

    def write(self, engine: sa.Engine, key: int, version: int, **data: object) -> None:
        """Apply one upsert through the real apply path, with the declared contract."""
        module = self.write_module()
        manifest = load_manifest(self.tmp / "stores" / "replication.yaml")
        [declaration] = manifest.mirrors
        statements = statements_for(declaration, engine.dialect.name)
        event = upserted(module.Parcel(id=key, **data), version)
        with engine.begin() as connection:
            apply_changes(connection, statements, [event])


@pytest.fixture(params=["postgresql", "mysql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    engine = engine_for(request.param, tmp_path)

    def drop() -> None:
        with engine.begin() as connection:
            for table in TABLES:
                connection.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))

    drop()
    yield engine
    drop()
    engine.dispose()


@pytest.fixture
def project(engine: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    # The throwaway contract registers in a registry of its own for this test.
    monkeypatch.setattr(contracts_module.registry, "_contracts", {})
    monkeypatch.delitem(sys.modules, "shop_contracts", raising=False)
    return Project(tmp_path, engine.url.render_as_string(False))


def rows(engine: sa.Engine) -> dict[int, tuple[object, ...]]:
    columns = [c["name"] for c in sa.inspect(engine).get_columns("parcel_mirror")]
    wanted = [c for c in ("label", "weight") if c in columns]
    with engine.connect() as connection:
        found = connection.execute(
            sa.text(f"SELECT id, {', '.join(wanted)} FROM parcel_mirror ORDER BY id")
        ).all()
    return {row[0]: tuple(row[1:]) for row in found}


def test_a_field_added_to_a_contract_and_a_mirror_migrates_both_ways(
    engine: sa.Engine, project: Project
) -> None:
    project.declare(CONTRACT, "id, label")
    project.ok("generate", "-m", "create parcel mirror")
    project.ok("upgrade")
    assert "the database matches the declarations" in project.ok("check")
    project.write(engine, 1, 1, label="first")
    assert rows(engine) == {1: ("first",)}

    project.declare(CONTRACT + WEIGHT, "id, label, weight")
    behind = project.run("check")
    assert behind.returncode == 5
    assert "column parcel_mirror.weight (BIGINT) is declared but missing" in behind.stdout

    generated = project.ok("generate", "-m", "mirror weight")
    assert "adds parcel_mirror.weight (nullable)" in generated
    assert "replication backfill --entity shipping.parcel --consumer stores" in generated
    assert (
        "add_column(sa.Column('weight', sa.BigInteger(), nullable=True))" in project.revisions()[-1]
    )
    project.ok("upgrade")
    project.ok("check")
    project.write(engine, 2, 1, label="second", weight=7)
    assert rows(engine) == {1: ("first", None), 2: ("second", 7)}

    project.ok("downgrade", "-1")
    assert "weight" not in {c["name"] for c in sa.inspect(engine).get_columns("parcel_mirror")}
    assert project.run("check").returncode == 5
    project.ok("upgrade")
    project.ok("check")
    assert rows(engine) == {1: ("first", None), 2: ("second", None)}
    project.write(engine, 2, 2, label="second", weight=9)
    assert rows(engine) == {1: ("first", None), 2: ("second", 9)}


def test_a_column_is_dropped_only_when_the_consumer_stops_declaring_it(
    engine: sa.Engine, project: Project
) -> None:
    project.declare(CONTRACT + WEIGHT, "id, label, weight")
    project.ok("generate", "-m", "create")
    project.ok("upgrade")

    # The contract keeps the field; nothing to migrate while the mirror declares it.
    project.ok("check")
    project.declare(CONTRACT + WEIGHT, "id, label")
    generated = project.ok("generate", "-m", "stop mirroring weight")

    assert "drops parcel_mirror.weight: stores no longer declares it" in generated
    assert "drop_column('weight')" in project.revisions()[-1]
    project.ok("upgrade")
    project.ok("check")


def test_a_type_change_needing_a_data_migration_is_refused_and_a_widening_is_made(
    engine: sa.Engine, project: Project
) -> None:
    project.declare(CONTRACT, "id, label")
    project.ok("generate", "-m", "create")
    project.ok("upgrade")
    project.write(engine, 1, 1, label="x" * 50)

    project.declare(CONTRACT.replace("max_length=50", "max_length=20"), "id, label")
    refused = project.run("generate", "-m", "shorter labels")
    assert refused.returncode == 1
    assert "refusing to generate" in refused.stderr
    assert "parcel_mirror.label: VARCHAR(50) -> VARCHAR(20)" in refused.stderr
    assert "needs a data migration" in refused.stderr
    assert len(project.revisions()) == 1  # nothing written

    project.declare(
        CONTRACT.replace("label: str = Field(max_length=50)", "label: int"), "id, label"
    )
    refused = project.run("generate", "-m", "numeric labels")
    assert refused.returncode == 1
    assert "parcel_mirror.label: VARCHAR(50) -> BIGINT" in refused.stderr

    project.declare(CONTRACT.replace("max_length=50", "max_length=80"), "id, label")
    generated = project.ok("generate", "-m", "longer labels")
    assert "widens parcel_mirror.label: VARCHAR(50) -> VARCHAR(80)" in generated
    project.ok("upgrade")
    project.ok("check")
    project.write(engine, 2, 1, label="y" * 80)
    assert rows(engine) == {1: ("x" * 50,), 2: ("y" * 80,)}


def test_an_event_for_a_column_not_migrated_yet_is_retried_then_applied_after_upgrade(
    engine: sa.Engine, project: Project, tmp_path: Path
) -> None:
    project.declare(CONTRACT, "id, label")
    project.ok("generate", "-m", "create")
    project.ok("upgrade")
    # The consumer deploys its new declaration before its migration runs.
    project.declare(CONTRACT + WEIGHT, "id, label, weight")
    parcel = project.write_module().Parcel
    manifest = load_manifest(project.tmp / "stores" / "replication.yaml")

    body = encode_event(upserted(parcel(id=5, label="new", weight=3), 1)).decode()
    record = sqs_record(body, queue="dev-stores--shipping-parcel-v1", receive_count=1)
    database = connect(engine.dialect.name, tmp_path)
    apply = harness(database, manifest)
    try:
        response = apply({"Records": [record]})
        assert apply.failed_ids(response) == [record["messageId"]]  # SQS retries it
        assert apply.dead_letters.messages == []
        assert rows(engine) == {}  # nothing applied, not even the label
        [reason] = [
            row[0] for row in consumer_rows(database, "SELECT reason FROM replication_failures")
        ]
        assert "the mirror lacks column weight: a migration is pending" in reason
        assert "replication migrations upgrade --service stores" in reason

        project.ok("generate", "-m", "mirror weight")
        project.ok("upgrade")
        retried = {**record, "attributes": {**record["attributes"], "ApproximateReceiveCount": "2"}}
        assert apply.failed_ids(apply({"Records": [retried]})) == []
        assert rows(engine) == {5: ("new", 3)}
    finally:
        apply.close()
        database.close()
