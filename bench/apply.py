"""Throughput of the version-guarded apply, against baselines measured in the same run.

PostgreSQL: events/s of ``apply_changes`` at batch sizes 10, 100, 1,000 and
10,000 into a customer mirror holding 100,000 rows, with a mix of inserts,
updates, stale events and deletes, against, on an identical plain table
holding 100,000 other rows:

- (a) ``COPY`` of the same rows (the ceiling: no guard, no conflict handling),
- (b) one guarded upsert per row with a commit per row (a hand-written handler).

MariaDB: the apply against one multi-row ``INSERT`` of the same rows.

Every timing includes building the rows from the decoded events and the commit.
Each figure is the median of several rounds, rounds interleaved between the
contenders so machine noise hits all of them alike.

    python bench/apply.py            # full run
    python bench/apply.py --quick    # under 40 s

The last line is one JSON object with the ratios.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import io
import json
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg2
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from contracts import Address, Customer, Tier
from replication.events import ChangeEvent, deleted, upserted
from replication.manifest import MirrorDeclaration, load_manifest
from replication.mirror import apply_changes
from replication.mirror.render import statements_for
from replication.mirror.statements import MirrorStatements
from replication.mirror.tables import mirror_table
from replication.mirror.values import COPY, converters
from tests.databases import POSTGRES_URL, mysql_connection, mysql_sqlalchemy_url

ROOT = Path(__file__).resolve().parent.parent
MIX = {"insert": 0.30, "update": 0.40, "stale": 0.15, "delete": 0.15}


class Owner:
    """The owner's side of the workload: which keys exist and at which version."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.versions: dict[uuid.UUID, int] = {}
        self.live: list[uuid.UUID] = []
        now = dt.datetime.now(dt.UTC)
        self.templates = [
            Customer(
                id=uuid.UUID(int=i + 1),
                name=f"Customer {i} \t'quoted' \\ {chr(0x1F600)}",
                email=f"user{i}@example.com",
                tier=list(Tier)[i % 4],
                credit_limit=Decimal(i * 7 % 100000) / 100,
                created_at=now - dt.timedelta(minutes=i),
                tags=["b2b", f"region-{i % 7}"],
                address=Address(
                    street=f"{i} Main St", city="Lyon", postal_code="69001", country="FR"
                ),
                phone=None if i % 3 else "+3361234567",
            )
            for i in range(200)
        ]

    def state(self, key: uuid.UUID) -> Customer:
        return self.rng.choice(self.templates).model_copy(update={"id": key})

    def new_key(self) -> ChangeEvent:
        key = uuid.uuid4()
        self.versions[key] = 1
        self.live.append(key)
        return upserted(self.state(key), 1)

    def batch(self, size: int) -> list[ChangeEvent]:
        """One delivery batch drawn from the mix; the owner's state moves accordingly."""
        events: list[ChangeEvent] = []
        kinds = self.rng.choices(list(MIX), weights=list(MIX.values()), k=size)
        for kind in kinds:
            if kind == "insert" or len(self.live) < 10:
                events.append(self.new_key())
                continue
            index = self.rng.randrange(len(self.live))
            key = self.live[index]
            if kind == "update":
                self.versions[key] += 1
                events.append(upserted(self.state(key), self.versions[key]))
            elif kind == "stale":
                events.append(upserted(self.state(key), max(1, self.versions[key] - 1)))
            else:
                self.versions[key] += 1
                self.live[index] = self.live[-1]
                self.live.pop()
                events.append(deleted(Customer, key, self.versions[key]))
        return events


# ---------------------------------------------------------------- baselines
#
# Every baseline turns the same decoded events into rows with the converters the
# apply uses, so what differs is only how the rows reach the table.


def _rows(statements: MirrorStatements, events: list[ChangeEvent], target: str) -> list[list[Any]]:
    now = dt.datetime.now(dt.UTC)
    convert = converters(statements.kinds, target)
    data_columns = statements.columns[1:-5]
    rows = []
    for event in events:
        state = event.data
        data = [None if state is None else getattr(state, c) for c in data_columns]
        values = [event.key[0], *data, event.version, state is None, event.id, event.time, now]
        rows.append([f(v) for f, v in zip(convert, values, strict=True)])
    return rows


def copy_rows(
    conn: Any, table: str, statements: MirrorStatements, events: list[ChangeEvent]
) -> None:
    """Baseline (a): COPY the batch's rows into the plain table, then commit."""
    buffer = io.StringIO()
    for row in _rows(statements, events, COPY):
        buffer.write("\t".join(row))
        buffer.write("\n")
    buffer.seek(0)
    cursor = conn.cursor()
    cursor.copy_expert(f"COPY {table} ({', '.join(statements.columns)}) FROM STDIN", buffer)
    conn.commit()


def naive_upserts(
    conn: Any, table: str, statements: MirrorStatements, events: list[ChangeEvent]
) -> None:
    """Baseline (b): one guarded upsert and one commit per event."""
    columns = statements.columns
    sets = ", ".join(f"{c} = excluded.{c}" for c in columns[1:])
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))}) "
        f"ON CONFLICT (id) DO UPDATE SET {sets} WHERE {table}._version < excluded._version"
    )
    cursor = conn.cursor()
    for row in _rows(statements, events, "postgresql"):
        cursor.execute(sql, row)
        conn.commit()


def multirow_insert(
    conn: Any, table: str, statements: MirrorStatements, events: list[ChangeEvent]
) -> None:
    """MariaDB baseline: multi-row INSERTs (1,000 rows each) of the batch's rows, then commit."""
    rows = _rows(statements, events, "mysql")
    cursor = conn.cursor()
    placeholders = "(" + ", ".join(["%s"] * len(statements.columns)) + ")"
    head = f"INSERT INTO {table} ({', '.join(statements.columns)}) VALUES "
    for start in range(0, len(rows), 1000):
        chunk = rows[start : start + 1000]
        cursor.execute(head + ", ".join([placeholders] * len(chunk)), [v for r in chunk for v in r])
    conn.commit()


def apply_and_commit(conn: Any, statements: MirrorStatements, events: list[ChangeEvent]) -> None:
    """The contender: the library's apply, then commit."""
    apply_changes(conn, statements, events)
    conn.commit()


# ---------------------------------------------------------------- harness


def _fresh_keys(events: list[ChangeEvent]) -> list[ChangeEvent]:
    """The batch's rows, one per key as the apply writes them, under new keys."""
    last: dict[Any, ChangeEvent] = {}
    for event in events:
        if event.key not in last or event.version > last[event.key].version:
            last[event.key] = event
    out = []
    for event in last.values():
        key = uuid.uuid4()
        if event.data is None:
            out.append(deleted(Customer, key, event.version, event_id=event.id))
        else:
            state = event.data.model_copy(update={"id": key})
            out.append(upserted(state, event.version, event_id=event.id))
    return out


def _cleanup(conn: Any, table: str, events: list[ChangeEvent]) -> None:
    cursor = conn.cursor()
    keys = [str(e.key[0]) for e in events]
    for start in range(0, len(keys), 1000):
        part = keys[start : start + 1000]
        cursor.execute(f"DELETE FROM {table} WHERE id IN ({', '.join(['%s'] * len(part))})", part)
    conn.commit()


Contender = Callable[[Any, str, MirrorStatements, list[ChangeEvent]], None]


def _timed_baseline(
    action: Contender,
    conn: Any,
    table: str,
    statements: MirrorStatements,
    events: list[ChangeEvent],
) -> float:
    """Time a baseline on the batch's rows under fresh keys, then remove them again."""
    fresh = _fresh_keys(events)
    start = time.perf_counter()
    action(conn, table, statements, fresh)
    elapsed = time.perf_counter() - start
    _cleanup(conn, table, fresh)
    return elapsed


def _timed_apply(conn: Any, statements: MirrorStatements, events: list[ChangeEvent]) -> float:
    start = time.perf_counter()
    apply_and_commit(conn, statements, events)
    return time.perf_counter() - start


def _rounds(size: int, quick: bool) -> int:
    budget = 12_000 if quick else 60_000
    return max(3, min(15 if quick else 31, budget // size))


def _setup(engine_url: str, declaration: MirrorDeclaration, plain_name: str) -> sa.Table:
    engine = sa.create_engine(engine_url, poolclass=sa.pool.NullPool)
    plain = mirror_table(dataclasses.replace(declaration, table=plain_name))
    for table in (mirror_table(declaration), plain):
        table.drop(engine, checkfirst=True)
        table.create(engine)
    engine.dispose()
    return plain


def _seed(conn: Any, statements: MirrorStatements, owner: Owner, rows: int) -> float:
    start = time.perf_counter()
    for done in range(0, rows, 10_000):
        apply_and_commit(
            conn, statements, [owner.new_key() for _ in range(min(10_000, rows - done))]
        )
    return time.perf_counter() - start


def _rate(size: int, timings: list[float]) -> float:
    return size / statistics.median(timings) if timings else float("nan")


def bench_postgres(declaration: MirrorDeclaration, quick: bool) -> dict[str, float]:
    url = POSTGRES_URL.replace("postgresql:", "postgresql+psycopg2:", 1)
    plain = _setup(url, declaration, "bench_customer_plain")
    conn = psycopg2.connect(POSTGRES_URL)
    statements = statements_for(declaration, "postgresql")
    plain_statements = statements_for(
        dataclasses.replace(declaration, table=plain.name), "postgresql"
    )
    owner = Owner(seed=1)
    seeded = 100_000
    took = _seed(conn, statements, owner, seeded)
    _seed(conn, plain_statements, Owner(seed=2), seeded)
    conn.autocommit = True
    cursor = conn.cursor()
    for table in (declaration.table, plain.name):
        cursor.execute(f"VACUUM ANALYZE {table}")
    conn.autocommit = False
    print(f"PostgreSQL: mirror and plain table seeded with {seeded:,} rows each ({took:.1f} s)")
    heads = ("batch", "apply ev/s", "COPY ev/s", "naive ev/s", "vs COPY", "vs naive")
    print("{:>6} {:>11} {:>11} {:>11} {:>8} {:>9}".format(*heads))
    results: dict[str, float] = {}
    for size in (10, 100, 1000, 10_000):
        apply_t: list[float] = []
        copy_t: list[float] = []
        naive_t: list[float] = []
        for _ in range(_rounds(size, quick)):
            events = owner.batch(size)
            apply_t.append(_timed_apply(conn, statements, events))
            copy_t.append(_timed_baseline(copy_rows, conn, plain.name, statements, events))
            if size <= (100 if quick else 1000):
                naive_t.append(_timed_baseline(naive_upserts, conn, plain.name, statements, events))
        apply_rate, copy_rate = _rate(size, apply_t), _rate(size, copy_t)
        naive_rate = _rate(size, naive_t)
        results[f"pg_ratio_vs_copy_{size}"] = apply_rate / copy_rate
        results[f"pg_ratio_vs_naive_{size}"] = apply_rate / naive_rate
        results[f"pg_apply_events_per_s_{size}"] = apply_rate
        results[f"pg_copy_events_per_s_{size}"] = copy_rate
        results[f"pg_naive_events_per_s_{size}"] = naive_rate
        print(
            f"{size:>6} {apply_rate:>11,.0f} {copy_rate:>11,.0f} {naive_rate:>11,.0f} "
            f"{apply_rate / copy_rate:>7.2f}x {apply_rate / naive_rate:>8.1f}x"
        )
    conn.close()
    return results


def bench_mariadb(declaration: MirrorDeclaration, quick: bool) -> dict[str, float]:
    plain = _setup(mysql_sqlalchemy_url(), declaration, "bench_customer_plain")
    conn = mysql_connection()
    statements = statements_for(declaration, "mysql")
    owner = Owner(seed=3)
    seeded = 20_000 if quick else 100_000
    took = _seed(conn, statements, owner, seeded)
    print(f"MariaDB: mirror seeded with {seeded:,} rows ({took:.1f} s)")
    print(f"{'batch':>6} {'apply ev/s':>11} {'INSERT ev/s':>12} {'vs INSERT':>10}")
    results: dict[str, float] = {}
    for size in (10, 100, 1000, 10_000):
        apply_t: list[float] = []
        insert_t: list[float] = []
        for _ in range(max(3, _rounds(size, quick) // 2)):
            events = owner.batch(size)
            apply_t.append(_timed_apply(conn, statements, events))
            insert_t.append(_timed_baseline(multirow_insert, conn, plain.name, statements, events))
        apply_rate, insert_rate = _rate(size, apply_t), _rate(size, insert_t)
        results[f"mariadb_ratio_vs_insert_{size}"] = apply_rate / insert_rate
        results[f"mariadb_apply_events_per_s_{size}"] = apply_rate
        results[f"mariadb_insert_events_per_s_{size}"] = insert_rate
        ratio = apply_rate / insert_rate
        print(f"{size:>6} {apply_rate:>11,.0f} {insert_rate:>12,.0f} {ratio:>9.2f}x")
    conn.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds; finishes in under 40 s")
    parser.add_argument("--skip-mariadb", action="store_true", help="PostgreSQL figures only")
    args = parser.parse_args()
    manifest = load_manifest(ROOT / "examples" / "orders" / "replication.yaml")
    declaration = dataclasses.replace(
        manifest.mirror("crm.customer"), table="bench_customer_mirror"
    )
    started = time.perf_counter()
    results = bench_postgres(declaration, args.quick)
    if not args.skip_mariadb:
        results |= bench_mariadb(declaration, args.quick)
    print(f"total {time.perf_counter() - started:.1f} s")
    summary = {"bench": "apply", "quick": args.quick}
    summary |= {k: round(v, 3) if v == v else None for k, v in results.items()}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
