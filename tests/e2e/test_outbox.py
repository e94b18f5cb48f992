"""The owner side against real databases and a real moto server (boto3 over HTTP).

An event is published if and only if its business change committed, at least
once, with each key's versions in order, through failures of SNS entries,
throttling, a relay killed between publishing and marking, and two relays
running at once.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from contracts import Address, Customer, Product, Tier
from replication.contracts import Contract
from replication.events import (
    ChangeEvent,
    decode_event,
    deleted,
    encode_event,
    to_document,
    upserted,
)
from replication.outbox import (
    OutgoingMessage,
    Publisher,
    PublishError,
    PublishResult,
    Relay,
    RelayConfig,
    SnsPublisher,
    TopicRoute,
    TopicRouter,
    outbox_table,
    record_event,
    record_upsert,
)
from replication.outbox.record import outbox_row
from replication.payloads import (
    EXTENDED_SIZE_ATTRIBUTE,
    PayloadStore,
    parse_pointer,
    resolve_payload,
)
from tests.aws import MotoServer, bodies, drain_queue, moto_server, subscribed_queue
from tests.owners import BUSINESS, engine_for, product, reset_owner, sell
from tests.paths import ROOT

SERVER_DIALECTS = ["postgresql", "mysql"]


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


@pytest.fixture(params=["sqlite", *SERVER_DIALECTS])
def owner(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    """An owner database with an empty outbox and business table."""
    engine = engine_for(request.param, tmp_path)
    reset_owner(engine)
    yield engine
    engine.dispose()


def new_topic(moto: MotoServer, *, fifo: bool = False) -> tuple[str, str]:
    """A fresh topic and a raw-delivery queue subscribed to it: (topic ARN, queue URL)."""
    suffix = uuid.uuid4().hex[:8]
    sns = moto.client("sns")
    if fifo:
        arn = sns.create_topic(
            Name=f"dev-catalog-product-v1-{suffix}.fifo", Attributes={"FifoTopic": "true"}
        )["TopicArn"]
        queue = subscribed_queue(moto, arn, f"dev-orders--product-{suffix}.fifo", fifo=True)
    else:
        arn = sns.create_topic(Name=f"dev-catalog-product-v1-{suffix}")["TopicArn"]
        queue = subscribed_queue(moto, arn, f"dev-orders--product-{suffix}")
    return arn, queue


def router(
    arn: str, *, fifo: bool = False, entity: str = "catalog.product", supersede: bool = False
) -> TopicRouter:
    """A route to ``arn``; superseding off unless asked, so every version is published
    (the relay's superseding is tested in tests/integration/test_relay_superseding.py)."""
    return TopicRouter({(entity, 1): TopicRoute(arn, fifo, supersede)})


def received_versions(messages: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Versions per subject, in arrival order."""
    seen: dict[str, list[int]] = {}
    for body in bodies(messages):
        seen.setdefault(body["subject"], []).append(body["entityversion"])
    return seen


# -- the transactional guarantee ------------------------------------------------------------


def test_a_rolled_back_change_publishes_nothing_and_a_committed_one_exactly_its_events(
    owner: sa.Engine, moto: MotoServer
) -> None:
    arn, queue = new_topic(moto)
    committed = [sell(owner, f"SKU-{i % 4}", i) for i in range(12)]

    def failing_transaction() -> None:
        with owner.begin() as conn:
            conn.execute(BUSINESS.insert().values(sku="GHOST", title="x", stock=1, version=1))
            record_upsert(conn, product("GHOST", 1), 1)
            raise RuntimeError("the business transaction fails after recording")

    with pytest.raises(RuntimeError):
        failing_transaction()

    stats = Relay(owner, SnsPublisher(moto.client("sns")), router(arn)).drain()

    got = bodies(drain_queue(moto, queue))
    assert sorted(b["id"] for b in got) == sorted(str(e.id) for e in committed)
    assert all(b["subject"] != "GHOST" for b in got)
    assert stats.published == 12
    for message in drain_queue(moto, queue):
        raise AssertionError(f"unexpected extra message {message}")


def test_a_backlog_reaches_a_fifo_topic_as_each_keys_newest_version(
    owner: sa.Engine, moto: MotoServer
) -> None:
    arn, queue = new_topic(moto, fifo=True)
    for round_ in range(8):
        for sku in ("A-1", "B-2", "C-3"):
            sell(owner, sku, round_)

    stats = Relay(
        owner, SnsPublisher(moto.client("sns")), router(arn, fifo=True, supersede=True)
    ).drain()

    assert received_versions(drain_queue(moto, queue)) == {s: [8] for s in ("A-1", "B-2", "C-3")}
    assert (stats.published, stats.superseded) == (3, 21)


def test_each_keys_versions_arrive_in_order_on_a_fifo_topic(
    owner: sa.Engine, moto: MotoServer
) -> None:
    arn, queue = new_topic(moto, fifo=True)
    for round_ in range(8):
        for sku in ("A-1", "B-2", "C-3", "D-4", "E-5"):
            sell(owner, sku, round_)

    relay = Relay(
        owner, SnsPublisher(moto.client("sns")), router(arn, fifo=True), config=RelayConfig(7)
    )
    relay.drain()

    messages = drain_queue(moto, queue)
    assert received_versions(messages) == {
        sku: list(range(1, 9)) for sku in ("A-1", "B-2", "C-3", "D-4", "E-5")
    }
    attributes = messages[0]["MessageAttributes"]
    assert attributes["entity"]["StringValue"] == "catalog.product"
    assert attributes["op"]["StringValue"] == "upserted"
    assert attributes["contract_version"]["StringValue"] == "1"


# -- failures ------------------------------------------------------------------------------


class FlakyPublisher(Publisher):
    """Wraps a real publisher: fails chosen entries as SNS reports them, throttles calls."""

    def __init__(self, inner: Publisher, *, fail: set[str], throttle_calls: int) -> None:
        self.inner = inner
        self.fail = set(fail)
        self.throttle_calls = throttle_calls
        self.published: list[OutgoingMessage] = []
        self.lock = threading.Lock()

    def publish_batch(self, topic_arn: str, messages: Sequence[OutgoingMessage]) -> PublishResult:
        with self.lock:
            if self.throttle_calls:
                self.throttle_calls -= 1
                raise PublishError("Throttling: Rate exceeded", throttled=True)
        failing = [m for m in messages if m.id in self.fail]
        passing = [m for m in messages if m.id not in self.fail]
        result = self.inner.publish_batch(topic_arn, passing)
        with self.lock:
            self.fail -= {m.id for m in failing}  # each injected failure happens once
            self.published += [m for m in passing if m.id not in result.failed]
        failed = dict(result.failed)
        failed.update({m.id: "InternalError: injected" for m in failing})
        return PublishResult(failed=failed)


def outbox_rows(engine: sa.Engine) -> list[sa.Row[Any]]:
    t = outbox_table()
    with engine.connect() as conn:
        return list(conn.execute(sa.select(t).order_by(t.c.id)))


def test_failed_entries_and_throttling_leave_rows_unpublished_then_published(
    owner: sa.Engine, moto: MotoServer
) -> None:
    arn, queue = new_topic(moto)
    events = [sell(owner, sku, n) for n in range(3) for sku in ("A-1", "B-2", "C-3")]
    ids = [row.id for row in outbox_rows(owner)]
    first_a = str(ids[0])  # A-1 at version 1
    publisher = FlakyPublisher(SnsPublisher(moto.client("sns")), fail={first_a}, throttle_calls=1)
    relay = Relay(owner, publisher, router(arn), config=RelayConfig(backoff_base=0.0))

    throttled = relay.relay_once()
    assert throttled.throttled == 1
    assert throttled.published == 0
    rows = outbox_rows(owner)
    assert all(row.published_at is None for row in rows)
    # The throttled call held the first of each key; the rest were not tried.
    assert [row.attempts for row in rows] == [1, 1, 1, 0, 0, 0, 0, 0, 0]
    assert "Throttling" in rows[0].last_error

    relay.drain()
    by_id = {str(row.id): row for row in outbox_rows(owner)}
    assert by_id[first_a].attempts == 2
    assert "InternalError: injected" in by_id[first_a].last_error
    relay.drain()

    assert all(row.published_at is not None for row in outbox_rows(owner))
    got = bodies(drain_queue(moto, queue))
    assert sorted(b["id"] for b in got) == sorted(str(e.id) for e in events)
    published_versions: dict[str, list[int]] = {}
    for message in publisher.published:
        body = json.loads(message.body)
        published_versions.setdefault(body["subject"], []).append(body["entityversion"])
    assert published_versions == {sku: [1, 2, 3] for sku in ("A-1", "B-2", "C-3")}


def test_a_row_without_a_topic_fails_with_its_reason_and_holds_its_key(
    owner: sa.Engine, moto: MotoServer
) -> None:
    sell(owner, "A-1", 1)
    sell(owner, "A-1", 2)
    relay = Relay(owner, SnsPublisher(moto.client("sns")), TopicRouter({}))

    stats = relay.relay_once()

    first, second = outbox_rows(owner)
    assert (stats.published, stats.failed) == (0, 1)
    assert first.last_error == "no topic for catalog.product v1"
    assert second.attempts == 0
    assert relay.pending() == 2


# -- a relay killed between publishing and marking -------------------------------------------

KILLED_RELAY = """
import os, signal, sys
import sqlalchemy as sa
import boto3
from replication.outbox import Relay, RelayConfig, SnsPublisher, TopicRoute, TopicRouter

class KillAfterPublish(SnsPublisher):
    def publish_batch(self, topic_arn, messages):
        result = super().publish_batch(topic_arn, messages)
        print(len(messages), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # after SNS took them, before the mark
        return result

url, arn = sys.argv[1], sys.argv[2]
publisher = KillAfterPublish(boto3.client("sns"))
router = TopicRouter({("catalog.product", 1): TopicRoute(arn, supersede=False)})
Relay(sa.create_engine(url), publisher, router, config=RelayConfig(batch_size=50)).drain()
"""


@pytest.mark.parametrize("dialect", SERVER_DIALECTS)
def test_a_relay_killed_after_publishing_republishes_on_restart_and_loses_nothing(
    dialect: str, moto: MotoServer, tmp_path: Path
) -> None:
    engine = engine_for(dialect, tmp_path)
    reset_owner(engine)
    arn, queue = new_topic(moto)
    events = [sell(engine, f"SKU-{i % 7}", i) for i in range(30)]

    killed = subprocess.run(
        [sys.executable, "-c", KILLED_RELAY, engine.url.render_as_string(False), arn],
        env={**moto.env(), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    first_batch = int(killed.stdout.split()[0])
    assert first_batch > 0
    assert sum(row.published_at is None for row in outbox_rows(engine)) == 30

    Relay(engine, SnsPublisher(moto.client("sns")), router(arn)).drain()

    got = bodies(drain_queue(moto, queue))
    assert {b["id"] for b in got} == {str(e.id) for e in events}
    assert len(got) == 30 + first_batch  # the killed batch twice, nothing lost
    assert all(row.published_at is not None for row in outbox_rows(engine))
    engine.dispose()


# -- two relays at once ----------------------------------------------------------------------


@pytest.mark.parametrize("supersede", [False, True], ids=["every-version", "superseding"])
@pytest.mark.parametrize("dialect", SERVER_DIALECTS)
def test_two_relays_at_once_lose_nothing_and_never_publish_a_key_out_of_order(
    dialect: str, moto: MotoServer, tmp_path: Path, supersede: bool
) -> None:
    engine = engine_for(dialect, tmp_path)
    reset_owner(engine)
    arn, queue = new_topic(moto, fifo=True)
    keys = [f"K-{i}" for i in range(6)]
    writing = threading.Event()
    writing.set()
    written: list[ChangeEvent] = []

    def writer() -> None:
        for round_ in range(12):
            for sku in keys:
                written.append(sell(engine, sku, round_))
        writing.clear()

    recorder = FlakyPublisher(SnsPublisher(moto.client("sns")), fail=set(), throttle_calls=0)
    errors: list[BaseException] = []

    def relay_loop(batch_size: int) -> None:
        relay = Relay(
            sa.create_engine(engine.url),
            recorder,
            router(arn, fifo=True, supersede=supersede),
            config=RelayConfig(batch_size=batch_size),
        )
        try:
            while writing.is_set() or relay.pending():
                relay.relay_once()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer)]
    threads += [threading.Thread(target=relay_loop, args=(size,)) for size in (5, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    published: dict[str, list[int]] = {}
    for message in recorder.published:
        body = json.loads(message.body)
        published.setdefault(body["subject"], []).append(body["entityversion"])
    if supersede:  # versions skipped, never one after a newer, each key's last sent
        assert sorted(published) == keys
        assert all(v == sorted(set(v)) and v[-1] == 12 for v in published.values()), published
    else:
        assert published == {sku: list(range(1, 13)) for sku in keys}
    assert received_versions(drain_queue(moto, queue)) == published
    assert len(written) == 72
    engine.dispose()


# -- large payloads ---------------------------------------------------------------------------


def test_a_payload_over_256_kib_goes_through_s3_and_resolves_to_the_identical_event(
    owner: sa.Engine, moto: MotoServer
) -> None:
    bucket = f"payloads-{uuid.uuid4().hex[:8]}"
    s3 = moto.client("s3")
    s3.create_bucket(Bucket=bucket)
    suffix = uuid.uuid4().hex[:8]
    arn = moto.client("sns").create_topic(Name=f"dev-crm-customer-v1-{suffix}")["TopicArn"]
    queue = subscribed_queue(moto, arn, f"dev-orders--crm-customer-v1-{suffix}")
    big = Customer(
        id=uuid.uuid4(),
        name="Big",
        email="big@example.com",
        tier=Tier.GOLD,
        credit_limit=Decimal("1.00"),
        created_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        tags=[f"tag-{i}-" + "x" * 990 for i in range(300)],
        address=Address(street="1 Main", city="Lyon", postal_code="69001", country="FR"),
    )
    with owner.begin() as conn:
        event = record_upsert(conn, big, 1)
    [row] = outbox_rows(owner)
    assert len(row.payload.encode()) > 256 * 1024

    relay = Relay(
        owner,
        SnsPublisher(moto.client("sns")),
        router(arn, entity="crm.customer"),
        payloads=PayloadStore(s3, bucket, owner="crm"),
    )
    stats = relay.drain()

    [message] = drain_queue(moto, queue)
    assert stats.offloaded == 1
    assert parse_pointer(message["Body"]) == (bucket, f"events/crm/{event.id}.json")
    size = message["MessageAttributes"][EXTENDED_SIZE_ATTRIBUTE]
    assert (size["DataType"], size["StringValue"]) == ("Number", str(len(row.payload.encode())))
    resolved = resolve_payload(message["Body"], s3)
    assert resolved == row.payload
    decoded = decode_event(resolved)
    assert decoded.id == event.id
    assert decoded.data == big


def test_a_payload_over_the_limit_without_a_bucket_stays_unpublished_with_the_reason(
    owner: sa.Engine, moto: MotoServer
) -> None:
    arn, _ = new_topic(moto)
    big = Product(sku="BIG", title="x" * 300, price=Decimal(1), active=True, stock=1)
    with owner.begin() as conn:
        record_upsert(conn, big, 1)
        conn.execute(outbox_table().update().values(payload="y" * (300 * 1024)))

    stats = Relay(owner, SnsPublisher(moto.client("sns")), router(arn)).relay_once()

    [row] = outbox_rows(owner)
    assert (stats.published, stats.failed) == (0, 1)
    assert row.published_at is None
    assert "over the SNS limit" in row.last_error
    assert "no S3 bucket is configured" in row.last_error


def test_purge_removes_only_rows_published_before_the_retention(owner: sa.Engine) -> None:
    from replication.outbox import InMemoryPublisher

    for n in range(3):
        sell(owner, "A-1", n)
    relay = Relay(owner, InMemoryPublisher(), router("arn:aws:sns:us-east-1:1:t"))
    relay.drain()
    assert relay.purge_published() == 0

    later = Relay(
        owner,
        InMemoryPublisher(),
        router("arn:aws:sns:us-east-1:1:t"),
        clock=lambda: dt.datetime.now(dt.UTC) + dt.timedelta(days=8),
    )
    assert later.purge_published() == 3
    assert outbox_rows(owner) == []


def test_a_key_stuck_on_a_failing_row_does_not_starve_the_other_keys(owner: sa.Engine) -> None:
    from replication.outbox import InMemoryPublisher

    for n in range(6):
        sell(owner, "STUCK-1", n)
    others = [sell(owner, sku, 1) for sku in ("B-1", "C-1", "D-1")]
    stuck_head = str(outbox_rows(owner)[0].id)
    publisher = InMemoryPublisher()
    publisher.fail_ids = {stuck_head}
    relay = Relay(
        owner,
        publisher,
        router("arn:aws:sns:us-east-1:1:t"),
        config=RelayConfig(batch_size=5, backoff_base=0.0),
    )

    for _ in range(3):
        relay.drain()

    published = {json.loads(p.message.body)["id"] for p in publisher.published}
    assert published == {str(e.id) for e in others}
    rows = outbox_rows(owner)
    assert [row.published_at is None for row in rows[:6]] == [True] * 6
    assert rows[0].attempts >= 3  # retried every cycle (no back-off here), never skipped
    assert all(row.attempts == 0 for row in rows[1:6])


def test_sns_throttling_and_unconfirmed_entries_are_retried() -> None:
    import boto3
    from botocore.stub import Stubber

    sns = boto3.client(
        "sns", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    publisher = SnsPublisher(sns)
    messages = [OutgoingMessage(id=str(i), body="{}", attributes={}) for i in range(3)]
    with Stubber(sns) as stub:
        stub.add_client_error("publish_batch", service_error_code="Throttled", http_status_code=429)
        stub.add_response(
            "publish_batch",
            {"Successful": [{"Id": "0", "MessageId": "m0"}], "Failed": []},
        )
        with pytest.raises(PublishError) as throttled:
            publisher.publish_batch("arn:aws:sns:us-east-1:1:t", messages)
        result = publisher.publish_batch("arn:aws:sns:us-east-1:1:t", messages)

    assert throttled.value.throttled
    assert set(result.failed) == {"1", "2"}
    assert "not reported as published" in result.failed["1"]


class Note(Contract, entity="testkit.note", version=1, key="ref", register=False):
    """A text key and free text: every character JSON must escape, and some it must not."""

    ref: str
    text: str
    score: float


AWKWARD = 'q"uote b\\ack s/lash \n\t\r\b\f \x01\x1f\x7f é 漢 \u2028\u2029 \U0001f600 <&>'


def test_the_outbox_payload_is_exactly_json_dumps_of_the_cloudevents_document() -> None:
    # The payload's bytes are a published format: they must not move.
    zone = dt.timezone(dt.timedelta(hours=-5, minutes=-30))
    events = [
        upserted(Note(ref=AWKWARD, text=AWKWARD, score=1e16), 1),
        upserted(Note(ref="r/1", text="", score=-0.1), 2**63 - 1, time=dt.datetime.now(zone)),
        deleted(Note, AWKWARD, 7),
        upserted(product("SKU-1", 3), 4, event_id=uuid.uuid4()),
        deleted(Product, "SKU-1", 5, time=dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=zone)),
    ]
    for event in events:
        expected = json.dumps(
            to_document(event), separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
        assert encode_event(event) == expected.encode()
        assert outbox_row(event)["payload"] == expected
    assert decode_event(encode_event(events[3])).data == events[3].data


def test_a_flush_of_many_rows_inserts_them_in_order_in_few_statements(owner: sa.Engine) -> None:
    statements: list[bool] = []

    def seen(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        if "replication_outbox" in statement:
            statements.append(many)

    events = [upserted(product(f"SKU-{n}", n), 1) for n in range(250)]
    sa.event.listen(owner, "before_cursor_execute", seen)
    try:
        with owner.begin() as conn:
            record_event(conn, *events)
    finally:
        sa.event.remove(owner, "before_cursor_execute", seen)

    assert [str(row.event_id) for row in outbox_rows(owner)] == [str(e.id) for e in events]
    if owner.dialect.name != "sqlite":
        # 100 rows a statement; psycopg2's executemany would take a round trip a row.
        assert statements == [False, False, False]
