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
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg2
import pymysql
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from contracts import Address, Customer, Tier
from replication.events import ChangeEvent, deleted, upserted
from replication.manifest import MirrorDeclaration, load_manifest
from replication.mirror import apply_changes
from replication.mirror.statements import MirrorStatements, statements_for
from replication.mirror.tables import mirror_table
from replication.mirror.values import COPY, converters

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get(
    "REPLICATION_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
MYSQL_URL = os.environ.get("REPLICATION_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
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


def _plain_values(event: ChangeEvent, columns: list[str], now: dt.datetime) -> list[Any]:
    s = event.data
    data = [None if s is None else getattr(s, c) for c in columns[1:]]
    return [event.key[0], *data, event.version, s is None, event.id, event.time, now]


def copy_rows(
    conn: Any, table: str, statements: MirrorStatements, events: list[ChangeEvent]
) -> None:
    """Baseline (a): COPY the batch's rows into the plain table, then commit.

    Values are formatted with the same converters the apply uses, so the
    difference measured is the apply's reduction, staging and guarded merge.
    """
    now = dt.datetime.now(dt.UTC)
    columns = list(statements.columns)
    convert = converters(statements.kinds, COPY)
    buffer = io.StringIO()
    for event in events:
        values = _plain_values(event, columns[:-5], now)
        buffer.write("\t".join([f(v) for f, v in zip(convert, values, strict=True)]))
        buffer.write("\n")
    buffer.seek(0)
    cursor = conn.cursor()
    cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN", buffer)
    conn.commit()


def naive_upserts(conn: Any, table: str, columns: list[str], events: list[ChangeEvent]) -> None:
    """Baseline (b): one guarded upsert and one commit per event."""
    sets = ", ".join(f"{c} = excluded.{c}" for c in columns[1:])
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))}) "
        f"ON CONFLICT (id) DO UPDATE SET {sets} WHERE {table}._version < excluded._version"
    )
    cursor = conn.cursor()
    data_columns = columns[:-5]
    for event in events:
        now = dt.datetime.now(dt.UTC)
        values = [_param(v) for v in _plain_values(event, data_columns, now)]
        cursor.execute(sql, values)
        conn.commit()


def _param(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Address):
        return json.dumps(value.model_dump())
    if isinstance(value, list):
        return json.dumps(value)
    if isinstance(value, Tier):
        return value.value
    return value


def multirow_insert(conn: Any, table: str, columns: list[str], events: list[ChangeEvent]) -> None:
    """MariaDB baseline: one multi-row INSERT of the batch's rows, then commit."""
    now = dt.datetime.now(dt.UTC)
    data_columns = columns[:-5]
    rows = []
    for event in events:
        values = [_param(v) for v in _plain_values(event, data_columns, now)]
        rows.append(
            [
                v.astimezone(dt.UTC).replace(tzinfo=None) if isinstance(v, dt.datetime) else v
                for v in values
            ]
        )
    cursor = conn.cursor()
    placeholders = "(" + ", ".join(["%s"] * len(columns)) + ")"
    for start in range(0, len(rows), 1000):
        chunk = rows[start : start + 1000]
        cursor.execute(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
            + ", ".join([placeholders] * len(chunk)),
            [v for row in chunk for v in row],
        )
    conn.commit()


# ---------------------------------------------------------------- harness


def _fresh_keys(events: list[ChangeEvent]) -> list[ChangeEvent]:
    """The same rows under new keys, for a plain table that must not conflict."""
    seen: dict[Any, ChangeEvent] = {}
    for event in events:
        seen[event.key] = event  # the COPY ceiling writes one row per key, like the apply
    out = []
    for event in seen.values():
        key = uuid.uuid4()
        if event.data is None:
            out.append(deleted(Customer, key, event.version, event_id=event.id))
        else:
            out.append(
                upserted(
                    event.data.model_copy(update={"id": key}), event.version, event_id=event.id
                )
            )
    return out


def _cleanup(conn: Any, table: str, events: list[ChangeEvent], marker: str = "%s") -> None:
    cursor = conn.cursor()
    keys = [str(e.key[0]) for e in events]
    for start in range(0, len(keys), 1000):
        part = keys[start : start + 1000]
        cursor.execute(f"DELETE FROM {table} WHERE id IN ({', '.join([marker] * len(part))})", part)
    conn.commit()


def _timed(action: Callable[[], None]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def _rounds(size: int, quick: bool) -> int:
    budget = 12_000 if quick else 60_000
    return max(3, min(15 if quick else 31, budget // size))


def _setup(
    engine_url: str, declaration: MirrorDeclaration, plain_name: str
) -> tuple[sa.Table, sa.Table]:
    engine = sa.create_engine(engine_url, poolclass=sa.pool.NullPool)
    mirror = mirror_table(declaration)
    plain = mirror_table(dataclasses.replace(declaration, table=plain_name))
    for table in (mirror, plain):
        table.drop(engine, checkfirst=True)
        table.create(engine)
    engine.dispose()
    return mirror, plain


def _seed(conn: Any, statements: MirrorStatements, owner: Owner, rows: int) -> None:
    done = 0
    while done < rows:
        step = min(10_000, rows - done)
        apply_changes(conn, statements, [owner.new_key() for _ in range(step)])
        conn.commit()
        done += step


def _seed_plain(conn: Any, statements: MirrorStatements, rows: int) -> None:
    plain = dataclasses.replace(statements, table=statements.table)  # same SQL shape
    owner = Owner(seed=99)
    _seed(conn, plain, owner, rows)


def bench_postgres(declaration: MirrorDeclaration, quick: bool) -> dict[str, float]:
    url = PG_URL.replace("postgresql:", "postgresql+psycopg2:", 1)
    mirror, plain = _setup(url, declaration, "bench_customer_plain")
    conn = psycopg2.connect(PG_URL)
    statements = statements_for(declaration, "postgresql")
    plain_statements = statements_for(
        dataclasses.replace(declaration, table=plain.name), "postgresql"
    )
    owner = Owner(seed=1)
    seeded = 100_000
    t = _timed(lambda: _seed(conn, statements, owner, seeded))
    _seed(conn, plain_statements, Owner(seed=2), seeded)
    cursor = conn.cursor()
    conn.autocommit = True
    cursor.execute(f"VACUUM ANALYZE {mirror.name}")
    cursor.execute(f"VACUUM ANALYZE {plain.name}")
    conn.autocommit = False
    print(f"PostgreSQL: mirror and plain table seeded with {seeded:,} rows each ({t:.1f} s)")
    columns = list(statements.columns)
    results: dict[str, float] = {}
    print(
        f"{'batch':>6} {'apply ev/s':>12} {'COPY ev/s':>12} {'naive ev/s':>12} {'vs COPY':>8} {'vs naive':>9}"
    )
    for size in (10, 100, 1000, 10_000):
        apply_t: list[float] = []
        copy_t: list[float] = []
        naive_t: list[float] = []
        naive_sizes = size <= (100 if quick else 1000)
        for _ in range(_rounds(size, quick)):
            events = owner.batch(size)
            apply_t.append(
                _timed(lambda: (apply_changes(conn, statements, events), conn.commit())[1])
            )
            fresh = _fresh_keys(events)
            copy_t.append(_timed(lambda: copy_rows(conn, plain.name, statements, fresh)))
            _cleanup(conn, plain.name, fresh)
            if naive_sizes:
                fresh = _fresh_keys(events)
                naive_t.append(_timed(lambda: naive_upserts(conn, plain.name, columns, fresh)))
                _cleanup(conn, plain.name, fresh)
        apply_rate = size / statistics.median(apply_t)
        copy_rate = size / statistics.median(copy_t)
        naive_rate = size / statistics.median(naive_t) if naive_t else float("nan")
        results[f"pg_ratio_vs_copy_{size}"] = apply_rate / copy_rate
        results[f"pg_ratio_vs_naive_{size}"] = apply_rate / naive_rate
        results[f"pg_apply_events_per_s_{size}"] = apply_rate
        results[f"pg_copy_events_per_s_{size}"] = copy_rate
        print(
            f"{size:>6} {apply_rate:>12,.0f} {copy_rate:>12,.0f} {naive_rate:>12,.0f} "
            f"{apply_rate / copy_rate:>7.2f}x {apply_rate / naive_rate:>8.1f}x"
        )
    conn.close()
    return results


def bench_mariadb(declaration: MirrorDeclaration, quick: bool) -> dict[str, float]:
    parts = urlsplit(MYSQL_URL)
    url = MYSQL_URL.replace("mysql:", "mysql+pymysql:", 1) + "?charset=utf8mb4"
    mirror, plain = _setup(url, declaration, "bench_customer_plain")
    conn = pymysql.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=parts.username or "root",
        password=parts.password or "",
        database=parts.path.lstrip("/") or "test",
        charset="utf8mb4",
    )
    statements = statements_for(declaration, "mysql")
    owner = Owner(seed=3)
    seeded = 20_000 if quick else 100_000
    t = _timed(lambda: _seed(conn, statements, owner, seeded))
    print(f"MariaDB: mirror seeded with {seeded:,} rows ({t:.1f} s)")
    columns = list(statements.columns)
    results: dict[str, float] = {}
    print(f"{'batch':>6} {'apply ev/s':>12} {'INSERT ev/s':>12} {'vs INSERT':>10}")
    for size in (10, 100, 1000, 10_000):
        apply_t: list[float] = []
        insert_t: list[float] = []
        for _ in range(max(3, _rounds(size, quick) // 2)):
            events = owner.batch(size)
            apply_t.append(
                _timed(lambda: (apply_changes(conn, statements, events), conn.commit())[1])
            )
            fresh = _fresh_keys(events)
            insert_t.append(_timed(lambda: multirow_insert(conn, plain.name, columns, fresh)))
            _cleanup(conn, plain.name, fresh)
        apply_rate = size / statistics.median(apply_t)
        insert_rate = size / statistics.median(insert_t)
        results[f"mariadb_ratio_vs_insert_{size}"] = apply_rate / insert_rate
        results[f"mariadb_apply_events_per_s_{size}"] = apply_rate
        print(
            f"{size:>6} {apply_rate:>12,.0f} {insert_rate:>12,.0f} {apply_rate / insert_rate:>9.2f}x"
        )
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
