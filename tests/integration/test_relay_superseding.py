"""A relay that is behind publishes each key's newest version only, on every dialect.

The older waiting versions of a key are marked published and ``superseded``,
per major version; an entity whose
manifest says ``supersede: false`` gets every version, one per cycle, in order.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from replication.events import upserted
from replication.outbox import (
    InMemoryPublisher,
    Relay,
    RelayConfig,
    TopicRoute,
    TopicRouter,
    outbox_table,
    record_event,
)
from replication.outbox.routing import TopicRoute as RouteClass
from tests.conftest import DIALECTS
from tests.dual_contracts import AccountV2, StatusV2
from tests.owners import BUSINESS, engine_for, sell
from tests.paths import ROOT

PRODUCTS = "arn:aws:sns:us-east-1:123456789012:dev-catalog-product-v1"
ACCOUNTS_V1 = "arn:aws:sns:us-east-1:123456789012:dev-ledger-account-v1"
ACCOUNTS_V2 = "arn:aws:sns:us-east-1:123456789012:dev-ledger-account-v2"


@pytest.fixture(params=DIALECTS)
def owner(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    engine = engine_for(request.param, tmp_path)
    for table in (outbox_table(), BUSINESS):
        table.drop(engine, checkfirst=True)
        table.create(engine)
    yield engine
    engine.dispose()


def relay(owner: sa.Engine, publisher: InMemoryPublisher, **routes: TopicRoute) -> Relay:
    table = {("catalog.product", 1): routes.get("product", TopicRoute(PRODUCTS))}
    table[("ledger.account", 1)] = TopicRoute(ACCOUNTS_V1)
    table[("ledger.account", 2)] = TopicRoute(ACCOUNTS_V2)
    return Relay(owner, publisher, TopicRouter(table), config=RelayConfig(batch_size=50))


def sent(publisher: InMemoryPublisher) -> list[tuple[str, str, int]]:
    """(topic, subject, version) of each published message, in order."""
    result = []
    for published in publisher.published:
        document = json.loads(published.message.body)
        result.append((published.topic_arn, document["subject"], document["entityversion"]))
    return result


def outbox_rows(owner: sa.Engine) -> list[Any]:
    t = outbox_table()
    with owner.connect() as conn:
        return list(
            conn.execute(
                sa.select(
                    t.c.id,
                    t.c.subject,
                    t.c.contract_version,
                    t.c.entity_version,
                    t.c.published_at,
                    t.c.superseded,
                ).order_by(t.c.id)
            )
        )


def test_a_backlog_publishes_each_keys_newest_version_and_marks_the_rest(
    owner: sa.Engine,
) -> None:
    for version in range(1, 6):
        for sku in ("SKU-A", "SKU-B", "SKU-C"):
            sell(owner, sku, version * 10)
    publisher = InMemoryPublisher()

    stats = relay(owner, publisher).drain()

    assert sorted(sent(publisher)) == [(PRODUCTS, sku, 5) for sku in ("SKU-A", "SKU-B", "SKU-C")]
    assert (stats.published, stats.superseded, stats.failed) == (3, 12, 0)
    for row_id, _, _, version, published_at, superseded in outbox_rows(owner):
        assert published_at is not None
        assert superseded is (version != 5), row_id


def test_each_major_version_keeps_its_own_newest_row(owner: sa.Engine) -> None:
    with owner.begin() as conn:
        for version in range(1, 5):
            account = AccountV2(
                id="acc-1",
                given_name="Ada",
                family_name=f"Lovelace {version}",
                status=StatusV2.ACTIVE,
                credit=Decimal("10.00"),
            )
            record_event(conn, upserted(account, version))  # v2 and its v1 conversion
    publisher = InMemoryPublisher()

    stats = relay(owner, publisher).drain()

    assert sorted(sent(publisher)) == [(ACCOUNTS_V1, "acc-1", 4), (ACCOUNTS_V2, "acc-1", 4)]
    assert (stats.published, stats.superseded) == (2, 6)
    rows = outbox_rows(owner)
    for major in (1, 2):
        of_major = [r for r in rows if r.contract_version == major]
        assert [r.superseded for r in of_major] == [True, True, True, False]


def test_an_entity_that_turns_superseding_off_gets_every_version_in_order(
    owner: sa.Engine,
) -> None:
    for version in range(1, 5):
        sell(owner, "SKU-A", version)
    publisher = InMemoryPublisher()

    stats = relay(owner, publisher, product=TopicRoute(PRODUCTS, supersede=False)).drain()

    assert sent(publisher) == [(PRODUCTS, "SKU-A", v) for v in range(1, 5)]
    assert (stats.published, stats.superseded, stats.cycles) == (4, 0, 5)
    assert not any(r.superseded for r in outbox_rows(owner))


def test_when_the_newest_fails_the_older_stay_superseded_and_it_is_retried(
    owner: sa.Engine,
) -> None:
    for version in range(1, 4):
        sell(owner, "SKU-A", version)
    newest_id = outbox_rows(owner)[-1].id
    publisher = InMemoryPublisher()
    publisher.fail_ids.add(str(newest_id))
    now = [dt.datetime(2026, 1, 1, tzinfo=dt.UTC)]
    r = Relay(
        owner,
        publisher,
        TopicRouter({("catalog.product", 1): TopicRoute(PRODUCTS)}),
        clock=lambda: now[0],
    )

    first = r.relay_once()
    publisher.fail_ids.clear()
    sell(owner, "SKU-B", 1)
    second = r.relay_once()  # SKU-A's newest waits out its back-off
    now[0] += dt.timedelta(minutes=10)
    third = r.relay_once()

    assert (first.published, first.superseded, first.failed) == (0, 2, 1)
    assert (second.published, third.published) == (1, 1)
    assert sent(publisher) == [(PRODUCTS, "SKU-B", 1), (PRODUCTS, "SKU-A", 3)]
    assert all(row.published_at is not None for row in outbox_rows(owner))


def test_an_outbox_without_the_superseded_column_still_supersedes(
    owner: sa.Engine,
) -> None:
    legacy = outbox_table()
    with owner.begin() as conn:  # as an outbox made before the column existed
        conn.execute(sa.text(f"ALTER TABLE {legacy.name} DROP COLUMN superseded"))
    for version in range(1, 4):
        sell(owner, "SKU-A", version)
    publisher = InMemoryPublisher()

    stats = relay(owner, publisher).drain()

    assert sent(publisher) == [(PRODUCTS, "SKU-A", 3)]
    assert stats.superseded == 2
    with owner.connect() as conn:
        waiting = conn.execute(
            sa.select(sa.func.count()).select_from(legacy).where(legacy.c.published_at.is_(None))
        ).scalar_one()
    assert waiting == 0


def test_the_manifest_turns_superseding_off_per_entity(tmp_path: Path) -> None:
    from replication.manifest import load_manifest

    manifest_file = tmp_path / "replication.yaml"
    manifest_file.write_text(
        "service: catalog\ncontracts: [contracts]\n"
        f"python_path: [{ROOT}]\n"
        "database:\n  url_env: CATALOG_DATABASE_URL\n"
        "owns:\n  - entity: catalog.product\n    version: 1\n    supersede: false\n"
    )
    manifest = load_manifest(manifest_file)

    router = TopicRouter.for_manifest(manifest, region="us-east-1", account="123456789012")

    route = router.route("catalog.product", 1)
    assert isinstance(route, RouteClass)
    assert route.supersede is False


@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
def test_a_row_another_transaction_holds_leaves_its_key_to_go_one_by_one(
    dialect: str, tmp_path: Path
) -> None:
    engine = engine_for(dialect, tmp_path)
    for table in (outbox_table(), BUSINESS):
        table.drop(engine, checkfirst=True)
        table.create(engine)
    for version in range(1, 5):
        sell(engine, "SKU-A", version)
    middle = outbox_rows(engine)[2].id
    publisher = InMemoryPublisher()
    r = relay(engine, publisher)
    t = outbox_table()

    with engine.connect() as other, other.begin():  # InnoDB's claim scans leave such locks
        other.execute(sa.select(t.c.id).where(t.c.id == middle).with_for_update())
        held = r.relay_once()
    rest = r.drain()

    assert (held.published, held.superseded) == (1, 0)
    assert (rest.published, rest.superseded) == (1, 2)
    assert sent(publisher) == [(PRODUCTS, "SKU-A", 1), (PRODUCTS, "SKU-A", 4)]
    engine.dispose()
