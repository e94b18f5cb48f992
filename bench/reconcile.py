"""Reconcile against the naive comparison, measured in the same run.

crm's customer table (the owner) and orders' customer mirror, filled inside
PostgreSQL with the same N rows, then a handful of differences injected in
the mirror (rows deleted, changed, added, a version rolled back). Timed:

- **naive**: a plain full read of both tables to the client (every owner
  column, every mirrored column), streamed and dropped: the least a
  client-side comparison must do, before comparing anything;
- **reconcile**: ``replication reconcile``'s comparison (bucket sums in each
  database, the differing buckets' keys merged, differences confirmed).

Rounds alternate between the two; medians are reported. The reconcile must
find exactly the injected differences. Peak Python memory (tracemalloc) of
both is measured at N and at N/10: reconcile's stays flat.

    python bench/reconcile.py            # 1,000,000 rows
    python bench/reconcile.py --quick    # 200,000 rows, under 40 s

The last line is one JSON object with the ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples.crm import service as crm
from replication.dburl import sqlalchemy_url, with_search_path
from replication.manifest import load_manifest
from replication.mirror.tables import mirror_table
from replication.sync.reconcile import Reconciliation
from replication.sync.verify import compare_mirror
from tests.databases import POSTGRES_URL

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = "bench_reconcile"
DECLARATION = load_manifest(ROOT / "examples" / "orders" / "replication.yaml").mirror(
    "crm.customer"
)

FILL_OWNER = """
INSERT INTO crm_customers (id, name, email, tier, credit_limit, created_at, tags,
    street, city, postal_code, country, phone, version)
SELECT md5(i::text)::uuid::text, 'Customer ' || i, 'c' || i || '@example.com',
    (ARRAY['bronze', 'silver', 'gold', 'platinum'])[1 + i % 4], (i % 100000) / 100.0,
    timestamptz '2026-01-01 00:00:00+00' + i * interval '1.5 second',
    CASE WHEN i % 3 = 0 THEN '["b2b", "vip"]'::json ELSE '[]'::json END,
    i || ' Main St', 'Lyon', '69001', 'FR',
    CASE WHEN i % 2 = 0 THEN '+33 1 23 45 67 89' END, 1 + i % 5
FROM generate_series(1, :n) AS i
"""
FILL_MIRROR = """
INSERT INTO customer_mirror (id, name, email, tier, credit_limit, created_at, tags, address,
    phone, _version, _deleted, _event_id, _event_time, _applied_at)
SELECT id::uuid, name, email, tier, credit_limit, created_at, tags::jsonb,
    jsonb_build_object('street', street, 'city', city, 'postal_code', postal_code,
        'country', country),
    phone, version, false, md5(id)::uuid, now(), now()
FROM crm_customers
"""
DRIFT = [
    "DELETE FROM customer_mirror WHERE id = md5('11')::uuid",
    "DELETE FROM customer_mirror WHERE id = md5('12')::uuid",
    "UPDATE customer_mirror SET name = 'Someone else' WHERE id = md5('21')::uuid",
    "UPDATE customer_mirror SET address = jsonb_set(address, '{city}', '\"Paris\"') "
    "WHERE id = md5('22')::uuid",
    "UPDATE customer_mirror SET _version = _version - 1 WHERE id = md5('34')::uuid",
    "INSERT INTO customer_mirror SELECT md5('extra')::uuid, name, email, tier, credit_limit, "
    "created_at, tags, address, phone, _version, _deleted, md5('x')::uuid, _event_time, "
    "_applied_at FROM customer_mirror WHERE id = md5('40')::uuid",
]
EXPECTED = {"missing": 2, "differs": 2, "older": 1, "extra": 1, "ahead": 0}


def prepare(engine: sa.Engine, rows: int) -> None:
    """Both tables, filled inside the database, then the drift."""
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        conn.exec_driver_sql(f"CREATE SCHEMA {SCHEMA}")
    crm.Base.metadata.create_all(engine)
    mirror_table(DECLARATION, sa.MetaData()).create(engine)
    with engine.begin() as conn:
        conn.execute(sa.text(FILL_OWNER), {"n": rows})
        conn.exec_driver_sql(FILL_MIRROR)
        for statement in DRIFT:
            conn.exec_driver_sql(statement)
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE crm_customers")
        conn.exec_driver_sql("ANALYZE customer_mirror")


def naive(engine: sa.Engine) -> int:
    """Read every row of both tables to the client (streamed, then dropped)."""
    seen = 0
    mirrored = ", ".join(DECLARATION.fields) + ", _version, _deleted"
    for sql in ("SELECT * FROM crm_customers", f"SELECT {mirrored} FROM customer_mirror"):
        with engine.connect() as conn:
            result = conn.execution_options(stream_results=True, max_row_buffer=5000)
            for partition in result.exec_driver_sql(sql).partitions(5000):
                seen += len(partition)
    return seen


def compare(engine: sa.Engine) -> Reconciliation:
    """The reconcile's comparison."""
    return compare_mirror(crm.customer_source, DECLARATION, engine, engine)


def timed(work: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = work()
    return time.perf_counter() - started, value


def peak(work: Callable[[], Any]) -> float:
    """Peak traced Python memory of ``work``, in MiB."""
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200,000 rows, 3 rounds")
    parser.add_argument("--rows", type=int, help="rows per table (default 1,000,000)")
    args = parser.parse_args()
    rows = args.rows or (200_000 if args.quick else 1_000_000)
    rounds = 3 if args.quick else 5
    engine = sa.create_engine(
        sqlalchemy_url(with_search_path(POSTGRES_URL, SCHEMA)), poolclass=sa.pool.NullPool
    )
    started = time.perf_counter()
    try:
        print(f"memory (peak traced MiB) at {rows // 10:,} rows:")
        prepare(engine, rows // 10)
        small = (peak(lambda: naive(engine)), peak(lambda: compare(engine)))
        print(f"  naive {small[0]:.1f}   reconcile {small[1]:.1f}")

        prepare(engine, rows)
        print(f"filled {rows:,} rows per table in {time.perf_counter() - started:.1f} s")
        naive_times, reconcile_times = [], []
        for _ in range(rounds):
            seconds, seen = timed(lambda: naive(engine))
            assert seen == 2 * rows + 1 - 2, seen
            naive_times.append(seconds)
            seconds, result = timed(lambda: compare(engine))
            assert result.counts == EXPECTED, result.counts
            reconcile_times.append(seconds)
        large = (peak(lambda: naive(engine)), peak(lambda: compare(engine)))
        print(f"memory (peak traced MiB) at {rows:,} rows:")
        print(f"  naive {large[0]:.1f}   reconcile {large[1]:.1f}")
        naive_s = statistics.median(naive_times)
        reconcile_s = statistics.median(reconcile_times)
        ratio = reconcile_s / naive_s
        print(f"{rows:,} rows per table, {sum(EXPECTED.values())} differences, median of {rounds}:")
        print(f"  naive full read of both tables   {naive_s:8.2f} s")
        print(f"  reconcile                        {reconcile_s:8.2f} s")
        print(f"  ratio                            {ratio:8.2f}x  (target <= 0.3x)")
        print(f"  found: {result.counts}, {result.differing_buckets} differing bucket(s)")
        print(f"total {time.perf_counter() - started:.1f} s")
        print(
            json.dumps(
                {
                    "bench": "reconcile",
                    "rows": rows,
                    "quick": args.quick,
                    "ratio_vs_full_scan": round(ratio, 3),
                    "reconcile_s": round(reconcile_s, 3),
                    "naive_s": round(naive_s, 3),
                    "peak_mib_reconcile": [round(small[1], 2), round(large[1], 2)],
                    "peak_mib_naive": [round(small[0], 2), round(large[0], 2)],
                }
            )
        )
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        engine.dispose()


if __name__ == "__main__":
    main()
