"""What an owner's outbox write costs at commit, part by part, with psycopg 3 alone.

One psycopg 3 connection (no SQLAlchemy, no server-side prepared statements,
as the project connects), PostgreSQL on this machine. Each transaction
updates one row of a small table, then ends in one of these ways, all of
them interleaved round by round:

- ``commit``: ``COMMIT`` alone (the baseline);
- ``outbox``: the outbox ``INSERT`` of a customer event and ``COMMIT`` in one
  pipeline, as ``record_upsert`` does with psycopg 3;
- ``outbox_one_query``: the same ``INSERT`` and ``COMMIT`` as one simple query
  (client-side binding), the other way to wait for the server once;
- ``outbox_pk_only``: the same ``INSERT`` into a copy of the outbox with its
  primary key only (no secondary index, no NOTIFY trigger);
- ``plain_row``: an ``INSERT`` of one row into a two-column table without any
  index, trigger or sequence, in one pipeline with ``COMMIT``;
- ``select``: ``SELECT 1`` and ``COMMIT`` in one pipeline (the pipeline's own cost);
- ``update``: an ``UPDATE`` of another row and ``COMMIT`` in one pipeline.

Printed: the median wall time and client CPU time of each, and each one's
ratio to ``commit``. The last line is one JSON object.

    python bench/commit_parts.py            # 1,500 transactions of each
    python bench/commit_parts.py --quick    # 400 of each
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from replication.events import upserted
from replication.outbox.record import _insert_sql, outbox_row
from replication.outbox.table import outbox_table
from tests.databases import POSTGRES_URL
from tests.samples import customer

OUTBOX = "bench_parts_outbox"
PK_ONLY = "bench_parts_outbox_pk_only"
PLAIN = "bench_parts_plain"
ROWS = "bench_parts_rows"


def setup(keys: list[str]) -> None:
    engine = sa.create_engine(POSTGRES_URL.replace("postgresql:", "postgresql+psycopg:", 1))
    table = outbox_table(name=OUTBOX)
    with engine.begin() as conn:
        for name in (PK_ONLY, PLAIN, ROWS):
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
    table.drop(engine, checkfirst=True)
    table.create(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"CREATE TABLE {PK_ONLY} (LIKE {OUTBOX} INCLUDING DEFAULTS INCLUDING IDENTITY)"
        )
        conn.exec_driver_sql(f"ALTER TABLE {PK_ONLY} ADD PRIMARY KEY (id)")
        conn.exec_driver_sql(f"CREATE TABLE {PLAIN} (id bigint, payload text)")
        conn.exec_driver_sql(f"CREATE TABLE {ROWS} (id text PRIMARY KEY, name text)")
        conn.exec_driver_sql(
            f"INSERT INTO {ROWS} SELECT k, 'x' FROM unnest(CAST(%(keys)s AS text[])) AS k",
            {"keys": keys},
        )
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="400 transactions of each")
    args = parser.parse_args()
    transactions = 400 if args.quick else 1500
    keys = [str(uuid.uuid4()) for _ in range(50)]
    setup(keys)
    row = outbox_row(upserted(customer(1), 2))
    dialect = sa.create_engine("postgresql+psycopg://").dialect
    outbox_sql = _insert_sql(outbox_table(name=OUTBOX), dialect)
    pk_only_sql = outbox_sql.replace(OUTBOX, PK_ONLY, 1)
    conn = psycopg.connect(POSTGRES_URL, prepare_threshold=None)

    def pipelined(sql: str, params: Any) -> Callable[[int], None]:
        def end(n: int) -> None:
            with conn.pipeline():
                with conn.cursor() as cursor:
                    cursor.execute(sql, params(n) if callable(params) else params)
                conn.execute("COMMIT")

        return end

    def one_query(n: int) -> None:
        with psycopg.ClientCursor(conn) as cursor:
            cursor.execute(outbox_sql + "; COMMIT", row)

    endings: dict[str, Callable[[int], None]] = {
        "commit": lambda n: conn.commit(),
        "outbox": pipelined(outbox_sql, row),
        "outbox_one_query": one_query,
        "outbox_pk_only": pipelined(pk_only_sql, row),
        "plain_row": pipelined(f"INSERT INTO {PLAIN} (id, payload) VALUES (%s, %s)", (1, "x")),
        "select": pipelined("SELECT 1", None),
        "update": pipelined(
            f"UPDATE {ROWS} SET name = %s WHERE id = %s", lambda n: (f"y{n}", keys[(n + 1) % 50])
        ),
    }
    wall: dict[str, list[float]] = {name: [] for name in endings}
    cpu: dict[str, list[float]] = {name: [] for name in endings}
    names = list(endings)
    for n in range(transactions + 50):
        order = names[n % len(names) :] + names[: n % len(names)]  # rotate who goes first
        for name in order:
            start, start_cpu = time.perf_counter(), time.process_time()
            with conn.cursor() as cursor:
                cursor.execute(
                    f"UPDATE {ROWS} SET name = %s WHERE id = %s", (f"x{n}", keys[n % 50])
                )
            endings[name](n)
            if n >= 50:  # the first rounds warm up
                wall[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
    conn.close()
    base = statistics.median(wall["commit"])
    print(f"an UPDATE of one row, then, median of {transactions:,} transactions each:")
    print(f"  {'':16} {'wall ms':>9} {'client CPU ms':>14} {'vs COMMIT alone':>16}")
    figures: dict[str, float] = {}
    for name in names:
        median, used = statistics.median(wall[name]), statistics.median(cpu[name])
        print(f"  {name:16} {median * 1000:>9.3f} {used * 1000:>14.3f} {median / base:>15.2f}x")
        figures[f"{name}_ms"] = round(median * 1000, 3)
        figures[f"{name}_cpu_ms"] = round(used * 1000, 3)
        figures[f"{name}_ratio"] = round(median / base, 3)
    print(json.dumps({"bench": "commit_parts", "quick": args.quick, **figures}))


if __name__ == "__main__":
    main()
