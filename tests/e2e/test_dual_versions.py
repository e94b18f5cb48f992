"""Two major versions published side by side reach the consumers pinned to each.

ledger owns ``ledger.account`` v1 and v2 and records v2 only; v1 is derived by
the declared conversion in the same transaction. Through a moto server and
real PostgreSQL (one schema per service), ``reports`` stays on v1 and
``billing`` has moved to v2.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from replication.consumer.database import spec_from_url
from replication.consumer.failures_table import failures_table
from replication.consumer.runner import RunnerSettings
from replication.consumer.wiring import ConsumerSettings, build_runner
from replication.contracts import Contract
from replication.conversions import ConversionRegistry, conversion, with_older_versions
from replication.dburl import sqlalchemy_url, with_search_path
from replication.errors import ContractDefinitionError, ManifestError
from replication.events import upserted
from replication.manifest import Manifest, load_manifest
from replication.mirror.tables import mirror_table
from replication.outbox import record_delete, record_upsert
from replication.outbox.runner import RelaySettings, build_relay
from replication.outbox.table import outbox_table
from replication.topology.aws import AwsTopology
from replication.topology.model import build_topology
from tests.aws import ACCOUNT, REGION, MotoServer, moto_server
from tests.databases import POSTGRES_URL
from tests.dual_contracts import Account, AccountV2, Status, StatusV2

pytestmark = pytest.mark.postgresql

SERVICES = ("ledger", "reports", "billing")
MANIFESTS = {
    "ledger": """
        service: ledger
        database:
          url_env: LEDGER_DATABASE_URL
        owns:
          - entity: ledger.account
            version: 1
          - entity: ledger.account
            version: 2
    """,
    "reports": """
        service: reports
        database:
          url_env: REPORTS_DATABASE_URL
        mirrors:
          - entity: ledger.account
            version: 1
            table: account_mirror
            fields: [id, holder, status]
    """,
    "billing": """
        service: billing
        database:
          url_env: BILLING_DATABASE_URL
        mirrors:
          - entity: ledger.account
            version: 2
            table: account_mirror
            fields: [id, given_name, family_name, status, credit]
    """,
}


def url(service: str) -> str:
    return with_search_path(POSTGRES_URL, f"dual_{service}")


@pytest.fixture
def manifests(tmp_path: Path) -> dict[str, Manifest]:
    found = {}
    for service, text in MANIFESTS.items():
        path = tmp_path / service / "replication.yaml"
        path.parent.mkdir()
        path.write_text(textwrap.dedent(text))
        found[service] = load_manifest(path)
    return found


@pytest.fixture
def moto(monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoServer]:
    with moto_server() as server:
        for key, value in server.env().items():
            if key.startswith("AWS_"):
                monkeypatch.setenv(key, value)
        monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
        yield server


@pytest.fixture
def engines(manifests: dict[str, Manifest]) -> Iterator[dict[str, sa.Engine]]:
    admin = sa.create_engine(sqlalchemy_url(POSTGRES_URL), poolclass=sa.pool.NullPool)

    def reset(create: bool) -> None:
        with admin.begin() as conn:
            for service in SERVICES:
                conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS dual_{service} CASCADE")
                if create:
                    conn.exec_driver_sql(f"CREATE SCHEMA dual_{service}")

    reset(create=True)
    engines = {
        s: sa.create_engine(sqlalchemy_url(url(s)), poolclass=sa.pool.NullPool) for s in SERVICES
    }
    outbox_table(sa.MetaData()).metadata.create_all(engines["ledger"])
    for service in ("reports", "billing"):
        metadata = sa.MetaData()
        mirror_table(manifests[service].mirrors[0], metadata)
        failures_table(metadata)
        metadata.create_all(engines[service])
    yield engines
    for engine in engines.values():
        engine.dispose()
    reset(create=False)
    admin.dispose()


def account(key: str, given: str, status: StatusV2, credit: str = "10.00") -> AccountV2:
    return AccountV2(
        id=key, given_name=given, family_name="Smith", status=status, credit=Decimal(credit)
    )


def test_v1_and_v2_reach_the_consumers_pinned_to_each(
    moto: MotoServer, manifests: dict[str, Manifest], engines: dict[str, sa.Engine]
) -> None:
    AwsTopology(moto.client("sns"), moto.client("sqs"), region=REGION, account=ACCOUNT).apply(
        build_topology(manifests.values())
    )
    ledger = engines["ledger"]
    with ledger.begin() as conn:
        record_upsert(conn, account("a1", "Ann", StatusV2.ACTIVE), 1)
        record_upsert(conn, account("a2", "Bob", StatusV2.ACTIVE), 1)
        record_upsert(conn, account("a3", "Cid", StatusV2.ACTIVE), 1)
    with ledger.begin() as conn:
        record_upsert(conn, account("a1", "Ann", StatusV2.FROZEN, "99.50"), 2)
        record_delete(conn, AccountV2, "a3", 2)
    with ledger.connect() as conn:
        outbox = conn.exec_driver_sql(
            "SELECT contract_version, count(*) FROM replication_outbox GROUP BY 1 ORDER BY 1"
        ).all()
    assert [tuple(r) for r in outbox] == [(1, 5), (2, 5)]  # each change in both versions

    relay = build_relay(manifests["ledger"], RelaySettings(), url=url("ledger"))
    try:
        stats = relay.drain()
        # Per key and major version only the newest is sent: a1 and a3 changed twice.
        assert (stats.published, stats.superseded) == (6, 4)
    finally:
        relay.engine.dispose()

    expected = {
        "reports": {
            "a1": ("Ann Smith", "closed", 2, False),  # frozen is closed to a v1 reader
            "a2": ("Bob Smith", "active", 1, False),
            "a3": (None, None, 2, True),
        },
        "billing": {
            "a1": ("Ann", "Smith", "frozen", Decimal("99.50"), 2, False),
            "a2": ("Bob", "Smith", "active", Decimal("10.00"), 1, False),
            "a3": (None, None, None, None, 2, True),
        },
    }
    for service in ("reports", "billing"):
        runner = build_runner(
            manifests[service],
            ConsumerSettings(log_level="ERROR", metrics=False),
            RunnerSettings(batch_size=10, wait_time=1),
            spec=spec_from_url(url(service)),
        )
        deadline = time.monotonic() + 30
        while mirror(engines, service) != expected[service] and time.monotonic() < deadline:
            runner.drain()
        assert mirror(engines, service) == expected[service]
    sqs = moto.client("sqs")
    for queue in sqs.list_queues().get("QueueUrls", []):
        attributes = sqs.get_queue_attributes(
            QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        assert attributes["ApproximateNumberOfMessages"] == "0", queue  # nothing dead-lettered


def mirror(engines: dict[str, sa.Engine], service: str) -> dict[str, tuple[object, ...]]:
    columns = {
        "reports": "holder, status",
        "billing": "given_name, family_name, status, credit",
    }[service]
    with engines[service].connect() as conn:
        rows = conn.exec_driver_sql(
            f"SELECT id, {columns}, _version, _deleted FROM account_mirror"
        ).all()
    return {r[0]: tuple(r[1:]) for r in rows}


def test_recording_the_derived_version_directly_is_refused(engines: dict[str, sa.Engine]) -> None:
    with (
        engines["ledger"].begin() as conn,
        pytest.raises(ValueError, match=r"record ledger\.account v2"),
    ):
        record_upsert(conn, Account(id="a9", holder="Eve", status=Status.ACTIVE), 1)


def test_an_owner_publishing_two_versions_needs_the_conversion_between_them(
    tmp_path: Path,
) -> None:
    path = tmp_path / "replication.yaml"
    path.write_text(textwrap.dedent(MANIFESTS["ledger"]).replace("version: 1", "version: 2", 1))
    with pytest.raises(ManifestError, match="listed twice"):
        load_manifest(path)
    only_v2 = textwrap.dedent(MANIFESTS["ledger"]).split(
        "  - entity: ledger.account\n    version: 1\n"
    )
    path.write_text("".join(only_v2))
    with pytest.raises(ManifestError, match=r"also writes v1 .* which ledger does not list"):
        load_manifest(path)
    only_v1 = textwrap.dedent(MANIFESTS["ledger"]).rsplit("  - entity", 1)[0]
    path.write_text(only_v1)
    with pytest.raises(ManifestError, match=r"derived from ledger\.account v2"):
        load_manifest(path)


class _Other(Contract, entity="ledger.card", version=1, key="id", register=False):
    id: str


class _NumberKeyed(Contract, entity="ledger.account", version=3, key="id", register=False):
    id: int


@pytest.mark.parametrize(
    ("source", "target", "problem"),
    [
        (AccountV2, _Other, "both must be versions of one entity"),
        (Account, AccountV2, "converts a newer version to an older one"),
        (_NumberKeyed, Account, "the key must be the same in both versions"),
    ],
)
def test_a_conversion_is_checked_when_declared(
    source: type[Contract], target: type[Contract], problem: str
) -> None:
    with pytest.raises(ContractDefinitionError, match=problem):
        conversion(source, target, into=ConversionRegistry())(lambda state: state)


def test_a_conversion_must_return_the_older_version_with_the_same_key() -> None:
    event = upserted(account("k1", "Ann", StatusV2.ACTIVE), 1)
    wrong_type = ConversionRegistry()
    conversion(AccountV2, Account, into=wrong_type)(lambda state: state)
    with pytest.raises(TypeError, match="returned AccountV2, not Account"):
        with_older_versions(event, wrong_type)
    moved = ConversionRegistry()
    conversion(AccountV2, Account, into=moved)(
        lambda state: Account(id="other", holder="x", status=Status.ACTIVE)
    )
    with pytest.raises(ValueError, match="changed the key of 'k1'"):
        with_older_versions(event, moved)
