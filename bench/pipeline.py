"""The consumer side end to end, against baselines measured in the same run.

1. End to end through a real moto server (boto3 over HTTP). The topology is
   applied from the ``examples/`` manifests with :class:`AwsTopology` (topic
   ``dev-crm-customer-v1``, queue ``dev-orders--crm-customer-v1`` with its DLQ,
   raw delivery). Each round, N ``crm.customer`` v1 upserts (fresh keys) are
   written with ``record_upsert`` into a PostgreSQL outbox, untimed: that is the
   owner's business transaction, measured by ``bench/relay.py``. Then two
   contenders move the same N payloads, interleaved, alternating which goes
   first:

   - project: the project's :class:`Relay` drains the outbox to the topic
     (claim, PublishBatch, mark, commit), then the project's
     :class:`EventSourceRunner` (built by ``build_runner``, drain mode, batch
     size 10 as Lambda's default) receives them, drives the
     :class:`ApplyFunction` with Lambda-shaped events, which applies them to a
     real PostgreSQL mirror, and deletes what it reports done;
   - raw: a boto3 loop over the same payloads on the same topic and queue,
     without any database: PublishBatch (10 entries, the relay's message
     attributes), then ReceiveMessage (10 at a time, asking for the same
     message and system attributes the runner asks for) and DeleteMessageBatch,
     until a receive comes back empty (the runner's drain-mode stop rule).

   The project's side therefore includes the relay from the outbox (the
   fairest reading of "end to end"); the raw side publishes the very payloads
   the relay read. Phases run one after the other in both contenders (publish
   everything, then consume everything), so each round's queue holds at most N
   messages; moto slows down with deep queues (every SQS call scans the whole
   queue), so rounds are of 100 events, 5 rounds with --quick, 21 otherwise.
   Figures are medians over the rounds; ratio = project events/s over raw
   events/s. The split (publish part, consume part) is printed too, and the
   spread of the per-round ratios: moto's own speed varies a lot.

2. The apply handler at batch sizes 10, 100 and 1,000, without AWS: the
   :class:`ApplyFunction` of ``build_consumer`` (a real PostgreSQL connection,
   ``connect(spec_from_url(url))``) called with Lambda SQS events of N records
   of raw-delivered bodies, against ``apply_changes`` plus commit on the
   already decoded events, on its own connection of the same kind. Every round
   uses fresh keys, so every row is really written. Rounds interleave. A third
   column times ``decode_event`` alone on the same bodies (parsing and contract
   validation), the bulk of what the handler adds to the apply; then the CPU
   time per event (``time.process_time``) of parsing the JSON (``loads_strict``),
   of the rest of decoding and validating against the contract (``decode_event``
   less the parse), of the apply alone and of the whole handler.

Logging: the script sets ``POWERTOOLS_METRICS_DISABLED=true`` and runs the
consumer's :class:`Observer` at WARNING (metrics off), so that per-record log
lines on stdout do not dominate the figures. One extra figure shows the
handler at batch size 100 with INFO logging (one JSON line per record) written
to ``os.devnull``.

Tables of their own (``bench_pipeline_customer_mirror``, ``bench_pipeline_outbox``)
keep the run clear of the test suite's tables.

    python bench/pipeline.py            # full run, about 1 minute
    python bench/pipeline.py --quick    # under 40 s

The last line is one JSON object.
"""

from __future__ import annotations

import os

os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"

import argparse
import copy
import dataclasses
import datetime as dt
import json
import logging
import statistics
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from contracts import Address, Customer, Tier
from replication.consumer.database import ConnectionSpec, connect, spec_from_url
from replication.consumer.failures_table import failures_table
from replication.consumer.function import ApplyFunction
from replication.consumer.observe import Observer
from replication.consumer.runner import EventSourceRunner, RunnerSettings
from replication.consumer.wiring import (
    ConsumerSettings,
    LazyClients,
    build_consumer,
    build_runner,
    dump_statements,
)
from replication.events import ChangeEvent, decode_event, encode_event, upserted
from replication.manifest import Manifest, load_manifest, load_manifests
from replication.mirror.apply import apply_changes
from replication.mirror.tables import mirror_table
from replication.outbox import Relay, SnsPublisher, TopicRouter
from replication.outbox.record import record_upsert
from replication.outbox.table import outbox_table
from replication.topology.aws import AwsTopology
from replication.topology.model import build_topology
from replication.wire import loads_strict
from tests.aws import ACCOUNT, REGION, MotoServer, moto_server
from tests.consumer_support import lambda_event
from tests.databases import POSTGRES_URL

ROOT = Path(__file__).resolve().parent.parent
PG_URL = POSTGRES_URL.replace("postgresql:", "postgresql+psycopg2:", 1)
MIRROR_TABLE = "bench_pipeline_customer_mirror"
OUTBOX_TABLE = "bench_pipeline_outbox"
QUEUE = "dev-orders--crm-customer-v1"
TOPIC = "dev-crm-customer-v1"
ATTRIBUTES = {
    "entity": {"DataType": "String", "StringValue": "crm.customer"},
    "op": {"DataType": "String", "StringValue": "upserted"},
    "contract_version": {"DataType": "String", "StringValue": "1"},
}
RECORD_ATTRIBUTES = {
    name: {
        "stringValue": value["StringValue"],
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": value["DataType"],
    }
    for name, value in ATTRIBUTES.items()
}
CREATED = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
VISIBILITY = 5
"""Seconds a received batch stays invisible (both contenders): a retried record returns soon."""
APPLICATION_NAME = "bench-pipeline"
"""Not the default ``replication-consumer``: tests that kill consumer connections spare ours."""


def customer(key: uuid.UUID, n: int) -> Customer:
    return Customer(
        id=key,
        name=f"Customer {n}",
        email=f"c{n}@example.com",
        tier=list(Tier)[n % 4],
        credit_limit=Decimal("1500.00"),
        created_at=CREATED,
        tags=["b2b", f"region-{n % 7}"],
        address=Address(street=f"{n} Main St", city="Lyon", postal_code="69001", country="FR"),
        phone=None if n % 3 else "+3361234567",
    )


def fresh_events(count: int) -> list[ChangeEvent]:
    return [upserted(customer(uuid.uuid4(), n), 1) for n in range(count)]


def median_rate(count: int, timings: list[float]) -> float:
    return count / statistics.median(timings)


# ---------------------------------------------------------------- setup


def bench_manifest(folder: Path) -> tuple[Manifest, ConsumerSettings]:
    """The orders service mirroring crm.customer into its own table; statements pre-rendered."""
    orders = load_manifest(ROOT / "examples" / "orders" / "replication.yaml")
    declaration = dataclasses.replace(orders.mirror("crm.customer"), table=MIRROR_TABLE)
    manifest = dataclasses.replace(orders, mirrors=(declaration,))
    statements = folder / "mirror-statements.postgresql.json"
    statements.write_text(dump_statements(manifest, "postgresql"))
    settings = ConsumerSettings(statements=statements, log_level="WARNING", metrics=False)
    return manifest, settings


def create_tables(engine: sa.Engine, manifest: Manifest) -> sa.Table:
    mirror = mirror_table(manifest.mirror("crm.customer"))
    outbox = outbox_table(name=OUTBOX_TABLE)
    for table in (mirror, outbox):
        table.drop(engine, checkfirst=True)
        table.create(engine)
    # Written only when a record fails; shared with the tests, so only created if missing.
    failures_table(sa.MetaData()).create(engine, checkfirst=True)
    return outbox


def mirror_rows(spec: ConnectionSpec) -> int:
    conn = connect(spec)
    try:
        cursor = conn.cursor()
        cursor.execute(f"SELECT count(*) FROM {MIRROR_TABLE}")
        count: int = cursor.fetchone()[0]
        return count
    finally:
        conn.close()


# ---------------------------------------------------------------- 1. end to end


def fill_outbox(engine: sa.Engine, outbox: sa.Table, count: int) -> list[str]:
    """Write ``count`` upserts of fresh keys in one owner transaction; their payloads."""
    with engine.begin() as conn:
        conn.execute(outbox.delete())
        for n in range(count):
            record_upsert(conn, customer(uuid.uuid4(), n), 1, table=outbox)
    with engine.connect() as conn:
        query = sa.select(outbox.c.payload).order_by(outbox.c.id)
        return list(conn.execute(query).scalars())


def project_round(relay: Relay, runner: EventSourceRunner, count: int) -> tuple[float, float]:
    """Relay the outbox, then drain the queue through the handler; (publish s, consume s)."""
    stats = runner.stats
    before = (stats.deleted, stats.retried, stats.failed_batches)
    start = time.perf_counter()
    relayed = relay.drain()
    published = time.perf_counter()
    deadline = published + 120
    while stats.deleted - before[0] < count:
        runner.drain()
        if time.perf_counter() > deadline:
            raise RuntimeError(f"only {stats.deleted - before[0]} of {count} consumed")
    end = time.perf_counter()
    if relayed.published != count or relayed.failed:
        raise RuntimeError(f"relay: {relayed}")
    if stats.deleted - before[0] != count:
        raise RuntimeError(f"runner: {stats.line()}")
    if (stats.retried, stats.failed_batches) != before[1:]:
        # Only a database fault does this; the round is kept (the median absorbs it).
        print(f"  note: records left for retry in a round ({stats.line()})")
    return published - start, end - published


def raw_round(sns: Any, sqs: Any, arn: str, url: str, payloads: list[str]) -> tuple[float, float]:
    """PublishBatch the payloads, then receive and delete them; (publish s, consume s)."""
    start = time.perf_counter()
    for first in range(0, len(payloads), 10):
        entries = [
            {"Id": str(i), "Message": body, "MessageAttributes": ATTRIBUTES}
            for i, body in enumerate(payloads[first : first + 10])
        ]
        response = sns.publish_batch(TopicArn=arn, PublishBatchRequestEntries=entries)
        if response.get("Failed"):
            raise RuntimeError(response["Failed"])
    published = time.perf_counter()
    deleted = 0
    deadline = published + 120
    while True:
        messages = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
            VisibilityTimeout=VISIBILITY,
        ).get("Messages", [])
        if not messages:
            if deleted >= len(payloads):
                break  # drained: the same stop rule as the runner's drain mode
            if time.perf_counter() > deadline:
                raise RuntimeError(f"only {deleted} of {len(payloads)} received")
            continue
        response = sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
            ],
        )
        if response.get("Failed"):
            raise RuntimeError(response["Failed"])
        deleted += len(messages)
    if deleted != len(payloads):
        raise RuntimeError(f"{deleted} messages received, {len(payloads)} published")
    return published - start, time.perf_counter() - published


def bench_pipeline(
    server: MotoServer,
    engine: sa.Engine,
    outbox: sa.Table,
    manifest: Manifest,
    settings: ConsumerSettings,
    spec: ConnectionSpec,
    quick: bool,
) -> dict[str, float]:
    sns, sqs = server.client("sns"), server.client("sqs")
    aws = AwsTopology(sns, sqs, region=REGION, account=ACCOUNT)
    topology = build_topology(load_manifests([ROOT / "examples"]))
    aws.apply(topology)
    topic = topology.topic("crm.customer", 1)
    assert topic.name == TOPIC, topic
    arn = aws.topic_arn(topic)
    url: str = sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"]

    crm = load_manifest(ROOT / "examples" / "crm" / "replication.yaml")
    router = TopicRouter.for_manifest(crm, region=REGION, account=ACCOUNT)
    relay = Relay(engine, SnsPublisher(sns), router, table=outbox)
    clients = LazyClients(boto3.session.Session())  # AWS_ENDPOINT_URL points it at moto
    runner = build_runner(
        manifest,
        settings,
        RunnerSettings(wait_time=0, visibility_timeout=VISIBILITY),
        spec=spec,
        clients=clients,
    )
    assert [q.name for q in runner.queues] == [QUEUE], runner.queues

    count = 100
    rounds = 5 if quick else 21
    # Warm-up (connections, statement caches, moto's first requests), untimed.
    project_round(relay, runner, len(fill_outbox(engine, outbox, 20)))
    raw_round(sns, sqs, arn, url, fill_outbox(engine, outbox, 20))
    rows_before = mirror_rows(spec)

    project: list[tuple[float, float]] = []
    raw: list[tuple[float, float]] = []
    for n in range(rounds):
        payloads = fill_outbox(engine, outbox, count)
        for mine in (n % 2 == 0, n % 2 == 1):
            if mine:
                project.append(project_round(relay, runner, count))
            else:
                raw.append(raw_round(sns, sqs, arn, url, payloads))
    written = mirror_rows(spec) - rows_before
    if written != rounds * count:
        raise RuntimeError(f"{written} mirror rows written, expected {rounds * count}")
    depth = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    if int(depth["Attributes"]["ApproximateNumberOfMessages"]) != 0:
        raise RuntimeError(f"queue not empty: {depth['Attributes']}")

    project_rate = median_rate(count, [a + b for a, b in project])
    raw_rate = median_rate(count, [a + b for a, b in raw])
    relay_rate = median_rate(count, [a for a, _ in project])
    publish_rate = median_rate(count, [a for a, _ in raw])
    consume_rate = median_rate(count, [b for _, b in project])
    receive_rate = median_rate(count, [b for _, b in raw])
    print(f"end to end through moto, {count:,} events a round, median of {rounds} rounds:")
    print(f"  {'':34} {'project':>9} {'raw':>9} {'ratio':>7}")
    for label, ours, theirs in (
        ("end to end (events/s)", project_rate, raw_rate),
        ("  publish: relay / PublishBatch", relay_rate, publish_rate),
        ("  consume: runner+apply / recv+del", consume_rate, receive_rate),
    ):
        print(f"  {label:34} {ours:>9,.0f} {theirs:>9,.0f} {ours / theirs:>6.2f}x")
    ratios = sorted((r[0] + r[1]) / (p[0] + p[1]) for p, r in zip(project, raw, strict=True))
    print(
        f"  ({written:,} mirror rows written, queue empty after the run; per-round ratio "
        f"{ratios[0]:.2f}x to {ratios[-1]:.2f}x)"
    )
    return {
        "pipeline_events_per_s": project_rate,
        "raw_transport_events_per_s": raw_rate,
        "relay_events_per_s": relay_rate,
        "raw_publish_events_per_s": publish_rate,
        "consume_events_per_s": consume_rate,
        "raw_receive_delete_events_per_s": receive_rate,
    }


# ---------------------------------------------------------------- 2. the handler


class Records:
    """Lambda SQS events in the shape AWS delivers (tests/events/sqs_raw_delivery.json)."""

    def __init__(self) -> None:
        self.template: dict[str, Any] = lambda_event("sqs_raw_delivery.json")["Records"][0]
        self.template["eventSourceARN"] = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{QUEUE}"
        self.template["messageAttributes"] = RECORD_ATTRIBUTES

    def event(self, events: list[ChangeEvent]) -> dict[str, Any]:
        records = []
        for change in events:
            record = copy.deepcopy(self.template)
            record["messageId"] = str(uuid.uuid4())
            record["body"] = encode_event(change).decode()
            records.append(record)
        return {"Records": records}


def _handler_rounds(size: int, quick: bool) -> int:
    budget = 4_000 if quick else 20_000
    return max(5, min(40 if quick else 150, budget // size))


def bench_handler(
    manifest: Manifest, settings: ConsumerSettings, spec: ConnectionSpec, quick: bool
) -> dict[str, float]:
    consumer = build_consumer(manifest, settings, spec=spec, clients=LazyClients())
    observer = Observer(manifest.service, level="WARNING", metrics=False)
    function = ApplyFunction(consumer, observer)
    statements = consumer.statements["crm.customer"]
    conn = connect(spec)
    records = Records()

    def run_handler(event: dict[str, Any]) -> float:
        start = time.perf_counter()
        response = function(event, None)
        elapsed = time.perf_counter() - start
        if response["batchItemFailures"]:
            raise RuntimeError(response)
        return elapsed

    def run_apply(events: list[ChangeEvent]) -> float:
        start = time.perf_counter()
        apply_changes(conn, statements, events)
        conn.commit()
        return time.perf_counter() - start

    fields = manifest.mirror("crm.customer").fields
    cpu: dict[str, list[float]] = {}

    def run_decode(event: dict[str, Any]) -> float:
        start = time.perf_counter()
        for record in event["Records"]:
            decode_event(record["body"], fields=fields)
        return time.perf_counter() - start

    def cpu_us(what: str, size: int, run: Any, argument: Any) -> Any:
        """``run(argument)``, its CPU time per event kept under ``what``."""
        start = time.process_time()
        result = run(argument)
        cpu.setdefault(f"{what}_{size}", []).append((time.process_time() - start) / size * 1e6)
        return result

    def parse_all(event: dict[str, Any]) -> None:
        for record in event["Records"]:
            loads_strict(record["body"])

    run_handler(records.event(fresh_events(50)))  # warm-up: connection, caches
    run_apply(fresh_events(50))
    rows_before = mirror_rows(spec)
    expected = 0
    print("apply handler without AWS (PostgreSQL), fresh keys every round:")
    heads = ("batch", "rounds", "handler ev/s", "apply ev/s", "ratio", "decode ev/s")
    print("{:>7} {:>7} {:>13} {:>11} {:>7} {:>12}".format(*heads))
    results: dict[str, float] = {}
    for size in (10, 100, 1000):
        handler_t: list[float] = []
        apply_t: list[float] = []
        decode_t: list[float] = []
        rounds = _handler_rounds(size, quick)
        for n in range(rounds):
            event = records.event(fresh_events(size))
            events = fresh_events(size)
            for mine in (n % 2 == 0, n % 2 == 1):
                if mine:
                    handler_t.append(cpu_us("handler", size, run_handler, event))
                else:
                    apply_t.append(cpu_us("apply", size, run_apply, events))
            decode_t.append(cpu_us("decode", size, run_decode, event))
            cpu_us("parse", size, parse_all, event)
        expected += 2 * rounds * size
        handler_rate, apply_rate = median_rate(size, handler_t), median_rate(size, apply_t)
        results[f"handler_events_per_s_{size}"] = handler_rate
        results[f"apply_events_per_s_{size}"] = apply_rate
        results[f"handler_ratio_vs_apply_{size}"] = handler_rate / apply_rate
        results[f"decode_events_per_s_{size}"] = decode_rate = median_rate(size, decode_t)
        print(
            f"{size:>7} {rounds:>7} {handler_rate:>13,.0f} {apply_rate:>11,.0f} "
            f"{handler_rate / apply_rate:>6.2f}x {decode_rate:>12,.0f}"
        )
    print("CPU µs per event (process time, median of rounds):")
    print("{:>7} {:>8} {:>10} {:>8} {:>9}".format("batch", "parse", "validate", "apply", "handler"))
    for size in (10, 100, 1000):
        parse = statistics.median(cpu[f"parse_{size}"])
        validate = max(0.0, statistics.median(cpu[f"decode_{size}"]) - parse)
        apply = statistics.median(cpu[f"apply_{size}"])
        whole = statistics.median(cpu[f"handler_{size}"])
        print(f"{size:>7} {parse:>8.1f} {validate:>10.1f} {apply:>8.1f} {whole:>9.1f}")
        results |= {
            f"parse_cpu_us_{size}": parse,
            f"validate_cpu_us_{size}": validate,
            f"apply_cpu_us_{size}": apply,
            f"handler_cpu_us_{size}": whole,
        }

    # INFO logging to /dev/null against WARNING, batch 100, interleaved. Observers of one
    # service share one logging.Logger, so the level is switched on it round by round.
    size, rounds = 100, (10 if quick else 30)
    with open(os.devnull, "w") as sink:
        loud = ApplyFunction(
            consumer, Observer(manifest.service, level="INFO", stream=sink, metrics=False)
        )
        timings: dict[bool, list[float]] = {True: [], False: []}
        for n in range(rounds):
            for info in (n % 2 == 0, n % 2 == 1):
                observer.logger.setLevel(logging.INFO if info else logging.WARNING)
                event = records.event(fresh_events(size))
                start = time.perf_counter()
                response = (loud if info else function)(event, None)
                timings[info].append(time.perf_counter() - start)
                if response["batchItemFailures"]:
                    raise RuntimeError(response)
        observer.logger.setLevel(logging.WARNING)
    expected += 2 * rounds * size
    info_rate = median_rate(size, timings[True])
    quiet_rate = median_rate(size, timings[False])
    print(
        f"  batch {size}, INFO logs to /dev/null: {info_rate:,.0f} ev/s against "
        f"{quiet_rate:,.0f} at WARNING ({info_rate / quiet_rate:.2f}x)"
    )
    written = mirror_rows(spec) - rows_before
    if written != expected:
        raise RuntimeError(f"{written} mirror rows written, expected {expected}")
    conn.close()
    consumer.close()
    results["handler_info_log_events_per_s_100"] = info_rate
    results["handler_warning_log_events_per_s_100"] = quiet_rate
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller run; under 40 s")
    args = parser.parse_args()
    started = time.perf_counter()
    separator = "&" if "?" in POSTGRES_URL else "?"
    spec = spec_from_url(f"{POSTGRES_URL}{separator}application_name={APPLICATION_NAME}")
    engine = sa.create_engine(PG_URL)
    with tempfile.TemporaryDirectory() as folder:
        manifest, settings = bench_manifest(Path(folder))
        outbox = create_tables(engine, manifest)
        with moto_server() as server:
            saved = dict(os.environ)
            os.environ.update(server.env())
            try:
                figures = bench_pipeline(
                    server, engine, outbox, manifest, settings, spec, args.quick
                )
            finally:
                os.environ.clear()
                os.environ.update(saved)
        figures |= bench_handler(manifest, settings, spec, args.quick)
    engine.dispose()
    print(f"total {time.perf_counter() - started:.1f} s")
    summary: dict[str, Any] = {
        "bench": "pipeline",
        "ratio_vs_raw_transport": round(
            figures["pipeline_events_per_s"] / figures["raw_transport_events_per_s"], 3
        ),
        "quick": args.quick,
    }
    summary |= {k: round(v, 3) for k, v in figures.items()}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
