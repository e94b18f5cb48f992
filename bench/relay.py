"""The owner side's cost, against baselines measured in the same run.

1. Relay throughput: events/s from a PostgreSQL outbox to SNS (claim, publish
   with PublishBatch, mark, commit), against a loop of raw boto3 PublishBatch
   calls with the same payloads and attributes to the same topic of the same
   moto server. Rounds alternate between the two.
2. Catching up: a backlog of keys x versions (100 x 20), drained by the relay
   with superseding on (an event is done when published or superseded by a
   newer version of its key), against raw PublishBatch of every event. Also
   the messages consumers receive either way.
3. Commit latency of an owner's business transaction with the outbox write,
   against the same transaction without it, median of many transactions each,
   interleaved. Two transactions: the example crm service's ORM update (load
   a customer, change it, commit; with and without its outbox tracker), and a
   minimal one (one Core UPDATE and commit; with and without record_upsert).
   With psycopg 3 (``commit_overhead_ratio``), then psycopg2 (``..._psycopg2``).
   On this machine's loopback a round trip costs almost nothing, so the same
   two transactions run again through a local proxy that holds each packet
   for half of ``--rtt-ms`` (0.5 ms by default, a round trip within an AWS
   availability zone) each way: there the outbox's extra round trip, or its
   absence with psycopg 3's pipeline, shows (``..._at_rtt``).

    python bench/relay.py            # full run
    python bench/relay.py --quick    # under 40 s

The last line is one JSON object with the ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import queue
import socket
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from contracts import Address, Customer, Tier
from replication.outbox import Relay, SnsPublisher, TopicRoute, TopicRouter
from replication.outbox.record import record_upsert
from replication.outbox.table import outbox_table
from tests.aws import moto_server
from tests.databases import POSTGRES_URL

PG_URL = POSTGRES_URL.replace("postgresql:", "postgresql+psycopg2:", 1)
PG3_URL = POSTGRES_URL.replace("postgresql:", "postgresql+psycopg:", 1)

CUSTOMERS = sa.Table(
    "bench_crm_customers",
    sa.MetaData(),
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("tier", sa.String(16), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
)


def customer(key: uuid.UUID, n: int) -> Customer:
    return Customer(
        id=key,
        name=f"Customer {n}",
        email=f"c{n}@example.com",
        tier=list(Tier)[n % 4],
        credit_limit=Decimal("1500.00"),
        created_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        tags=["b2b", f"region-{n % 7}"],
        address=Address(street=f"{n} Main St", city="Lyon", postal_code="69001", country="FR"),
    )


@contextlib.contextmanager
def delayed(url: str, rtt_ms: float) -> Iterator[str]:
    """``url`` through a local TCP proxy holding each packet ``rtt_ms / 2`` each way."""
    target = urlsplit(url)
    one_way = rtt_ms / 2000
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def pump(source: socket.socket, sink: socket.socket) -> None:
        # Each packet leaves one_way after it arrived, as on a wire: packets sent back to
        # back are delayed once, not once each.
        packets: queue.SimpleQueue[tuple[float, bytes]] = queue.SimpleQueue()

        def send() -> None:
            with contextlib.suppress(OSError):
                while (item := packets.get())[1]:
                    time.sleep(max(0.0, item[0] + one_way - time.perf_counter()))
                    sink.sendall(item[1])
                sink.shutdown(socket.SHUT_WR)

        threading.Thread(target=send, daemon=True).start()
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                packets.put((time.perf_counter(), data))
        packets.put((0.0, b""))

    def accept() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection((target.hostname, target.port or 5432))
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=pump, args=(client, server), daemon=True).start()
            threading.Thread(target=pump, args=(server, client), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield url.replace(target.netloc, f"{target.username}@127.0.0.1:{port}", 1)
    finally:
        stop.set()
        listener.close()


def round_trip_ms(url: str) -> float:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        timings = []
        for _ in range(200):
            start = time.perf_counter()
            conn.exec_driver_sql("SELECT 1").scalar()
            timings.append(time.perf_counter() - start)
    engine.dispose()
    return statistics.median(timings) * 1000


def fill_outbox(engine: sa.Engine, count: int) -> None:
    with engine.begin() as conn:
        for n in range(count):
            record_upsert(conn, customer(uuid.uuid4(), n), 1)


def raw_publish(sns: Any, arn: str, payloads: list[str]) -> None:
    """The baseline: PublishBatch calls of 10 with the relay's attributes, nothing else."""
    for start in range(0, len(payloads), 10):
        entries = [
            {
                "Id": str(i),
                "Message": body,
                "MessageAttributes": {
                    "entity": {"DataType": "String", "StringValue": "crm.customer"},
                    "op": {"DataType": "String", "StringValue": "upserted"},
                    "contract_version": {"DataType": "String", "StringValue": "1"},
                },
            }
            for i, body in enumerate(payloads[start : start + 10])
        ]
        response = sns.publish_batch(TopicArn=arn, PublishBatchRequestEntries=entries)
        if response.get("Failed"):
            raise RuntimeError(response["Failed"])


def bench_throughput(engine: sa.Engine, sns: Any, arn: str, quick: bool) -> dict[str, float]:
    count = 1000 if quick else 4000
    rounds = 3 if quick else 5
    outbox = outbox_table()
    relay = Relay(engine, SnsPublisher(sns), TopicRouter({("crm.customer", 1): TopicRoute(arn)}))
    relay_t: list[float] = []
    raw_t: list[float] = []
    for _ in range(rounds):
        with engine.begin() as conn:
            conn.execute(outbox.delete())
        fill_outbox(engine, count)
        with engine.connect() as conn:
            payloads = list(conn.execute(sa.select(outbox.c.payload)).scalars())
        start = time.perf_counter()
        stats = relay.drain()
        relay_t.append(time.perf_counter() - start)
        assert stats.published == count, stats
        start = time.perf_counter()
        raw_publish(sns, arn, payloads)
        raw_t.append(time.perf_counter() - start)
    relay_rate = count / statistics.median(relay_t)
    raw_rate = count / statistics.median(raw_t)
    print(f"throughput over {count:,} events, median of {rounds} rounds:")
    print(f"  relay (outbox -> SNS)       {relay_rate:>9,.0f} events/s")
    print(f"  raw PublishBatch loop       {raw_rate:>9,.0f} events/s")
    print(f"  ratio                       {relay_rate / raw_rate:>9.2f}x")
    return {"relay_events_per_s": relay_rate, "raw_events_per_s": raw_rate}


def bench_catch_up(engine: sa.Engine, sns: Any, arn: str, quick: bool) -> dict[str, float]:
    keys, versions = 100, 20
    rounds = 3 if quick else 5
    outbox = outbox_table()
    relay = Relay(engine, SnsPublisher(sns), TopicRouter({("crm.customer", 1): TopicRoute(arn)}))
    relay_t: list[float] = []
    raw_t: list[float] = []
    published = superseded = 0
    for _ in range(rounds):
        with engine.begin() as conn:
            conn.execute(outbox.delete())
        ids = [uuid.uuid4() for _ in range(keys)]
        with engine.begin() as conn:
            for version in range(1, versions + 1):
                for n, key in enumerate(ids):
                    record_upsert(conn, customer(key, n * versions + version), version)
        with engine.connect() as conn:
            payloads = list(conn.execute(sa.select(outbox.c.payload)).scalars())
        start = time.perf_counter()
        stats = relay.drain()
        relay_t.append(time.perf_counter() - start)
        assert stats.published + stats.superseded == keys * versions, stats
        published, superseded = stats.published, stats.superseded
        start = time.perf_counter()
        raw_publish(sns, arn, payloads)
        raw_t.append(time.perf_counter() - start)
    events = keys * versions
    relay_rate = events / statistics.median(relay_t)
    raw_rate = events / statistics.median(raw_t)
    print(f"catching up on {keys} keys x {versions} versions, median of {rounds} rounds:")
    print(f"  relay, superseding on       {relay_rate:>9,.0f} events done/s")
    print(f"  raw PublishBatch of each    {raw_rate:>9,.0f} events/s")
    print(f"  ratio                       {relay_rate / raw_rate:>9.2f}x")
    print(
        f"  messages to each consumer   {published:>9,} (superseded {superseded:,}; raw {events:,})"
    )
    return {
        "catch_up_events_per_s": relay_rate,
        "catch_up_raw_events_per_s": raw_rate,
        "catch_up_messages": published,
        "catch_up_superseded": superseded,
        "catch_up_raw_messages": events,
    }


def bench_orm_commit(engine: sa.Engine, quick: bool) -> dict[str, float]:
    """The crm example's ORM update, with its tracker and without."""
    from contracts import Customer as CustomerContract
    from examples.crm.service import Base, CustomerRow, sessions, to_contract, tracker

    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    factory = sessions(engine)
    ids = []
    with factory.begin() as session:
        for n in range(50):
            row = CustomerRow(
                id=str(uuid.uuid4()),
                name=f"Customer {n}",
                email=f"c{n}@example.com",
                tier="gold",
                credit_limit=Decimal("1500.00"),
                created_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
                tags=["b2b"],
                street="1 Main St",
                city="Lyon",
                postal_code="69001",
                country="FR",
            )
            session.add(row)
            ids.append(row.id)
    transactions = 400 if quick else 2000
    timings: dict[bool, list[float]] = {True: [], False: []}
    for n in range(transactions):
        for record in (n % 2 == 0, n % 2 == 1):
            # Untracked, the same model and session write no event: the baseline.
            if record:
                tracker.track(CustomerRow, CustomerContract, to_contract=to_contract)
            else:
                tracker.untrack(CustomerRow)
            start = time.perf_counter()
            with factory.begin() as session:
                customer_row = session.get_one(CustomerRow, ids[n % len(ids)])
                customer_row.name = f"Customer {n} {record}"
            timings[record].append(time.perf_counter() - start)
    tracker.track(CustomerRow, CustomerContract, to_contract=to_contract)
    plain_ms = statistics.median(timings[False]) * 1000
    outboxed_ms = statistics.median(timings[True]) * 1000
    print(f"commit latency of the crm ORM update, median of {transactions:,} each:")
    print(f"  business change only        {plain_ms:>9.3f} ms")
    print(f"  with the outbox write       {outboxed_ms:>9.3f} ms")
    print(f"  ratio                       {outboxed_ms / plain_ms:>9.2f}x")
    return {"orm_commit_ms_plain": plain_ms, "orm_commit_ms_with_outbox": outboxed_ms}


def bench_commit(engine: sa.Engine, quick: bool) -> dict[str, float]:
    transactions = 400 if quick else 2000
    keys = [uuid.uuid4() for _ in range(50)]
    with engine.begin() as conn:
        conn.execute(CUSTOMERS.delete())
        conn.execute(
            CUSTOMERS.insert(),
            [{"id": str(k), "name": "x", "tier": "gold", "version": 1} for k in keys],
        )
    with_outbox: list[float] = []
    without: list[float] = []
    for n in range(transactions):
        key = keys[n % len(keys)]
        for record in (n % 2 == 0, n % 2 == 1):  # interleaved, alternating first
            start = time.perf_counter()
            with engine.begin() as conn:
                version = conn.execute(
                    CUSTOMERS.update()
                    .where(CUSTOMERS.c.id == str(key))
                    .values(name=f"Customer {n}", version=CUSTOMERS.c.version + 1)
                    .returning(CUSTOMERS.c.version)
                ).scalar_one()
                if record:
                    record_upsert(conn, customer(key, n), version)
            (with_outbox if record else without).append(time.perf_counter() - start)
    plain = statistics.median(without) * 1000
    outboxed = statistics.median(with_outbox) * 1000
    print(f"commit latency of a minimal transaction, median of {transactions:,} each:")
    print(f"  business change only        {plain:>9.3f} ms")
    print(f"  with the outbox write       {outboxed:>9.3f} ms")
    print(f"  ratio                       {outboxed / plain:>9.2f}x")
    return {"commit_ms_plain": plain, "commit_ms_with_outbox": outboxed}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller run; under 60 s")
    parser.add_argument(
        "--rtt-ms",
        type=float,
        default=0.5,
        help="the round trip the commit benches add through a proxy (default 0.5)",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    engine = sa.create_engine(PG_URL)
    for table in (outbox_table(), CUSTOMERS):
        table.drop(engine, checkfirst=True)
        table.create(engine)
    with moto_server() as server:
        sns = server.client("sns")
        arn = sns.create_topic(Name="bench-crm-customer-v1")["TopicArn"]
        figures = bench_throughput(engine, sns, arn, args.quick)
        figures |= bench_catch_up(engine, sns, arn, args.quick)
    for driver, url in (("psycopg", PG3_URL), ("psycopg2", PG_URL)):
        print(f"-- the owner's commit with {driver}")
        owner = sa.create_engine(url)
        suffix = "" if driver == "psycopg" else "_psycopg2"
        orm = bench_orm_commit(owner, args.quick)
        core = bench_commit(owner, args.quick)
        figures |= {f"{name}{suffix}": value for name, value in (orm | core).items()}
        owner.dispose()
        with delayed(url, args.rtt_ms) as far:
            print(f"-- the owner's commit with {driver}, {round_trip_ms(far):.2f} ms a round trip")
            owner = sa.create_engine(far)
            orm = bench_orm_commit(owner, args.quick)
            core = bench_commit(owner, args.quick)
            figures |= {f"{name}{suffix}_at_rtt": value for name, value in (orm | core).items()}
            owner.dispose()
    print(f"total {time.perf_counter() - started:.1f} s")
    summary: dict[str, Any] = {
        "bench": "relay",
        "quick": args.quick,
        "ratio_vs_raw_publish": round(
            figures["relay_events_per_s"] / figures["raw_events_per_s"], 3
        ),
        "catch_up_ratio_vs_raw_publish": round(
            figures["catch_up_events_per_s"] / figures["catch_up_raw_events_per_s"], 3
        ),
        "commit_overhead_ratio": round(
            figures["orm_commit_ms_with_outbox"] / figures["orm_commit_ms_plain"], 3
        ),
        "commit_overhead_ratio_minimal_tx": round(
            figures["commit_ms_with_outbox"] / figures["commit_ms_plain"], 3
        ),
        "commit_overhead_ratio_at_rtt": round(
            figures["orm_commit_ms_with_outbox_at_rtt"] / figures["orm_commit_ms_plain_at_rtt"], 3
        ),
        "commit_overhead_ratio_minimal_tx_at_rtt": round(
            figures["commit_ms_with_outbox_at_rtt"] / figures["commit_ms_plain_at_rtt"], 3
        ),
        "commit_overhead_ratio_psycopg2_at_rtt": round(
            figures["orm_commit_ms_with_outbox_psycopg2_at_rtt"]
            / figures["orm_commit_ms_plain_psycopg2_at_rtt"],
            3,
        ),
        "commit_overhead_ratio_minimal_tx_psycopg2_at_rtt": round(
            figures["commit_ms_with_outbox_psycopg2_at_rtt"]
            / figures["commit_ms_plain_psycopg2_at_rtt"],
            3,
        ),
        "rtt_ms": args.rtt_ms,
        "commit_overhead_ratio_psycopg2": round(
            figures["orm_commit_ms_with_outbox_psycopg2"] / figures["orm_commit_ms_plain_psycopg2"],
            3,
        ),
        "commit_overhead_ratio_minimal_tx_psycopg2": round(
            figures["commit_ms_with_outbox_psycopg2"] / figures["commit_ms_plain_psycopg2"], 3
        ),
    }
    summary |= {k: round(v, 3) for k, v in figures.items()}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
