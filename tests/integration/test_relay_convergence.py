"""The central property through the relay, on every dialect.

Owner transactions (upserts and deletes of a few keys) interleaved with cycles
of two relays sharing one outbox, with superseding on, and deliveries of what
they published, shuffled, duplicated and late, to the apply function of a
consumer: once the relays have drained and everything has been delivered,
the mirror equals the owner. On the way, no relay ever publishes a version of
a key after a newer one, and every row is published or superseded (marked so)
by a newer row of its key.

A third of the profile's examples per dialect, each up to 40 owner
transactions, relay cycles and deliveries: 100 by default,
HYPOTHESIS_PROFILE=thorough 1,000.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from replication.events import ChangeEvent
from replication.manifest import Manifest
from replication.mirror.statements import MirrorStatements
from replication.outbox import InMemoryPublisher, Relay, RelayConfig, TopicRoute, TopicRouter
from replication.outbox.table import outbox_table
from tests.conftest import DIALECTS
from tests.consumer_support import Harness, create_consumer_tables, harness, sqs_record
from tests.databases import Database, connect
from tests.mirror_state import expected_row, key_of, read_mirror
from tests.owners import BUSINESS, engine_for, remove, sell

TOPIC = "arn:aws:sns:us-east-1:123456789012:dev-catalog-product-v1"
QUEUE = "dev-orders--catalog-product-v1"
SKUS = ["SKU-A", "SKU-B", "SKU-C", "SKU-D"]

writes = st.tuples(st.just("write"), st.sampled_from(SKUS), st.booleans(), st.integers(0, 10**6))
cycles = st.tuples(st.just("relay"), st.integers(0, 1))
deliveries = st.tuples(st.just("deliver"), st.lists(st.integers(0, 10**6), max_size=6))
steps = st.lists(st.one_of(writes, cycles, deliveries), max_size=40)


@dataclass
class World:
    owner: sa.Engine
    mirror: Database
    statements: MirrorStatements
    apply: Harness


@pytest.fixture(scope="module", params=DIALECTS)
def world(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    orders_manifest: Manifest,
) -> Iterator[World]:
    folder: Path = tmp_path_factory.mktemp(request.param)
    owner = engine_for(request.param, folder)
    for table in (outbox_table(), BUSINESS):
        table.drop(owner, checkfirst=True)
        table.create(owner)
    mirror = connect(request.param, folder)
    create_consumer_tables(mirror, orders_manifest)
    function = harness(mirror, orders_manifest)
    try:
        yield World(
            owner, mirror, function.function.consumer.statements["catalog.product"], function
        )
    finally:
        function.close()
        mirror.close()
        owner.dispose()


def _reset(world: World) -> None:
    with world.owner.begin() as conn:
        conn.execute(outbox_table().delete())
        conn.execute(BUSINESS.delete())
    cursor = world.mirror.connection.cursor()
    cursor.execute(f"DELETE FROM {world.statements.table}")
    world.mirror.connection.commit()
    cursor.close()


def _deliver(world: World, bodies: list[str]) -> None:
    for start in range(0, len(bodies), 10):
        records = [sqs_record(body, queue=QUEUE) for body in bodies[start : start + 10]]
        response = world.apply({"Records": records})
        assert response == {"batchItemFailures": []}
    assert not world.apply.dead_letters.messages, world.apply.dead_letters.messages


@settings(max_examples=max(1, settings().max_examples // 3))
@given(plan=steps, data=st.data())
def test_owner_transactions_relay_cycles_and_any_delivery_converge(
    world: World, plan: list[tuple[Any, ...]], data: st.DataObject
) -> None:
    _reset(world)
    publisher = InMemoryPublisher()
    router = TopicRouter({("catalog.product", 1): TopicRoute(TOPIC)})
    relays = [
        Relay(
            world.owner,
            publisher,
            router,
            config=RelayConfig(batch_size=size, publish_concurrency=1),
        )
        for size in (1, 3)
    ]
    last: dict[str, ChangeEvent] = {}
    for step in plan:
        if step[0] == "write":
            _, sku, delete, stock = step
            last[sku] = (
                remove(world.owner, sku)
                if delete and sku in last
                else sell(world.owner, sku, stock)
            )
        elif step[0] == "relay":
            relays[step[1]].relay_once()
        else:
            published = [m.message.body for m in publisher.published]
            if published:
                _deliver(world, [published[i % len(published)] for i in step[1]])
    for relay in relays:
        relay.drain()

    bodies = [m.message.body for m in publisher.published]
    versions: dict[str, list[int]] = {}
    for body in bodies:
        document = json.loads(body)
        versions.setdefault(document["subject"], []).append(document["entityversion"])
    for sku, seen in versions.items():
        assert seen == sorted(set(seen)), f"{sku} published out of order or twice: {seen}"
        assert seen[-1] == last[sku].version
    assert sorted(versions) == sorted(last)

    outbox = outbox_table()
    with world.owner.connect() as conn:
        rows = conn.execute(
            sa.select(outbox.c.id, outbox.c.published_at, outbox.c.superseded)
        ).all()
    assert all(published_at is not None for _, published_at, _ in rows)
    assert len(bodies) + sum(1 for *_, superseded in rows if superseded) == len(rows)

    everything = data.draw(
        st.permutations(
            bodies + data.draw(st.lists(st.sampled_from(bodies)) if bodies else st.just([]))
        )
    )
    _deliver(world, everything)
    expected = {
        key_of(world.statements, event.key): expected_row(
            world.statements, event.key, event.version, event.data
        )
        for event in last.values()
    }
    assert read_mirror(world.mirror, world.statements) == expected
