"""Cold start of the apply Lambda, against a typical hand-written handler measured in the same run.

Each cold start is a fresh Python process (``.pyc`` caches warm, as in a
Lambda package): the time from spawning the interpreter to the handler having
served its first batch, i.e. interpreter start-up, import of the handler
module, and the first invocation with a real SQS event
(``tests/events/sqs_sns_envelope.json``: three upserts and a delete of two
customers), including the database connect and the apply against PostgreSQL.

- (a) ours: ``replication.consumer.handler.lambda_handler`` on the orders
  manifest, with a pre-rendered statements file (``REPLICATION_STATEMENTS``),
  metrics on, as it runs on Lambda;
- (b) typical: ``bench/typical_handler.py`` (Powertools, boto3 with a
  module-level client, SQLAlchemy ORM with ``session.merge``, psycopg2,
  pydantic contract), applying the same event to a table of the same shape.

Runs of (a) and (b) alternate (and alternate which goes first); the tables
are emptied before each run, so every run does the same writes. Each child
reports its own split (interpreter start-up, import, first batch) on one
line; the total is measured from the parent's clock before the spawn
(``CLOCK_MONOTONIC`` is shared by all processes). Nothing calls AWS: the
children get dummy credentials and an unreachable ``AWS_ENDPOINT_URL``.
The tables live in their own PostgreSQL schema (``bench_coldstart``).
Bytecode is cached under ``$TMPDIR/replication-coldstart-pycache``
(``PYTHONPYCACHEPREFIX``, even if ``PYTHONDONTWRITEBYTECODE`` is set here),
filled by one unmeasured start of each handler.

    python bench/coldstart.py            # 15 runs of each
    python bench/coldstart.py --quick    # 5 runs of each, under 40 s

The last line is one JSON object with the ratio and the absolute figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import psycopg2
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import contracts  # noqa: F401  (registers the contracts the manifest names)
from replication.consumer.failures_table import failures_table
from replication.consumer.wiring import dump_statements
from replication.manifest import load_manifest
from replication.mirror.tables import mirror_table
from tests.databases import POSTGRES_URL

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "examples" / "orders" / "replication.yaml"
EVENT = ROOT / "tests" / "events" / "sqs_sns_envelope.json"
SCHEMA = "bench_coldstart"
TYPICAL_TABLE = "typical_customer_mirror"
OURS = "replication.consumer.handler"
TYPICAL = "bench.typical_handler"
HEAVY = ("boto3", "botocore", "sqlalchemy")
"""Reported if in ``sys.modules`` after the first batch; boto3 and SQLAlchemy should not be."""
MARK = "COLDSTART "
"""Starts the line the child reports on (the driver spells it out)."""
PYCACHE = Path(tempfile.gettempdir()) / "replication-coldstart-pycache"

# The child: what the Lambda runtime does on a cold start (import the handler
# module, then invoke it once), timing each step with the system-wide clock.
DRIVER = """\
import time
started = time.monotonic()
import json, sys

class Context:
    function_name = "coldstart-bench"
    function_version = "$LATEST"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:coldstart-bench"
    aws_request_id = "00000000-0000-0000-0000-000000000000"
    log_group_name = "/aws/lambda/coldstart-bench"
    log_stream_name = "bench"
    def get_remaining_time_in_millis(self):
        return 900000

module, event_path = sys.argv[1], sys.argv[2]
with open(event_path) as file:
    event = json.load(file)
imported_from = time.monotonic()
handler = __import__(module, fromlist=["lambda_handler"]).lambda_handler
imported = time.monotonic()
response = handler(event, Context())
served = time.monotonic()
heavy = [m for m in sys.argv[3].split(",") if m in sys.modules]
print("COLDSTART " + json.dumps({
    "started": started, "imported_from": imported_from, "imported": imported,
    "served": served, "response": response, "heavy": heavy,
}), flush=True)
"""


@dataclasses.dataclass
class Run:
    """One cold start, in seconds."""

    total: float
    """From before the spawn to the first batch served."""
    startup: float
    """From before the spawn to the child's first statement (fork, exec, interpreter init)."""
    imports: float
    first_batch: float
    exit: float
    """From before the spawn to the process having exited."""
    cpu: float
    """CPU time of the child (user and system), exit included: less sensitive to a busy machine."""
    heavy: list[str]


def _url() -> str:
    # The schema keeps the bench's tables away from the tests' (same database).
    return f"{POSTGRES_URL}?options=-csearch_path%3D{SCHEMA}"


def _environment(statements: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
    # Bytecode is cached as in a Lambda package, outside the repository (and the venv).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(
        {
            "PYTHONPYCACHEPREFIX": str(PYCACHE),
            "REPLICATION_MANIFEST": str(MANIFEST),
            "REPLICATION_CONTRACTS": "contracts",
            "REPLICATION_PREFIX": "dev",
            "REPLICATION_STATEMENTS": str(statements),
            "ORDERS_DATABASE_URL": _url(),
            # A Lambda function verifies TLS by default; the local server has none.
            "REPLICATION_DATABASE_TLS": "off",
            "DLQ_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/dev-orders--crm-customer-v1-dlq",
            # Enough for boto3 to create a client; any call would fail fast, locally.
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
            "AWS_LAMBDA_FUNCTION_NAME": "coldstart-bench",
        }
    )
    return env


def _setup() -> Any:
    """The schema and its tables (ours, the typical handler's, failures); a connection to it."""
    manifest = load_manifest(MANIFEST)
    metadata = sa.MetaData()
    declaration = manifest.mirror("crm.customer")
    for mirror in manifest.mirrors:
        mirror_table(mirror, metadata)
    mirror_table(dataclasses.replace(declaration, table=TYPICAL_TABLE), metadata)
    failures_table(metadata)
    admin = psycopg2.connect(POSTGRES_URL)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    admin.close()
    url = _url().replace("postgresql:", "postgresql+psycopg2:", 1)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        metadata.drop_all(engine)
        metadata.create_all(engine)
    finally:
        engine.dispose()
    conn = psycopg2.connect(POSTGRES_URL, options=f"-csearch_path={SCHEMA}")
    return conn, [t.name for t in metadata.sorted_tables]


def _reset(conn: Any, tables: list[str]) -> None:
    conn.cursor().execute(f"TRUNCATE {', '.join(tables)}")
    conn.commit()


def _check(conn: Any, table: str) -> None:
    """The event's end state: customer 1 at version 2, customer 2 deleted at version 3."""
    cursor = conn.cursor()
    cursor.execute(f"SELECT id::text, name, _version, _deleted FROM {table} ORDER BY id")
    found = cursor.fetchall()
    conn.commit()
    expected = [
        ("0b7c2a01-5d1e-4c6f-9a7b-3e2f1d0c9b8a", "Ada King", 2, False),
        ("0b7c2a02-5d1e-4c6f-9a7b-3e2f1d0c9b8a", None, 3, True),
    ]
    if found != expected:
        raise SystemExit(f"{table} after the first batch: {found}, expected {expected}")


def cold_start(module: str, env: dict[str, str], flags: tuple[str, ...] = ()) -> tuple[Run, str]:
    """Run one cold start of ``module``'s handler; its figures and its stderr."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    spawned = time.monotonic()
    done = subprocess.run(
        [sys.executable, *flags, "-c", DRIVER, module, str(EVENT), ",".join(HEAVY)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    exited = time.monotonic()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{module} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    report = json.loads(lines[-1][len(MARK) :])
    if report["response"] != {"batchItemFailures": []}:
        raise SystemExit(f"{module} did not apply the whole batch: {report['response']}")
    run = Run(
        total=report["served"] - spawned,
        startup=report["started"] - spawned,
        imports=report["imported"] - report["imported_from"],
        first_batch=report["served"] - report["imported"],
        exit=exited - spawned,
        cpu=after.ru_utime + after.ru_stime - used.ru_utime - used.ru_stime,
        heavy=report["heavy"],
    )
    return run, done.stderr


def import_breakdown(stderr: str) -> list[tuple[str, float]]:
    """Self import time per top-level package (ms) from ``-X importtime`` output, largest first."""
    by_package: dict[str, float] = defaultdict(float)
    for line in stderr.splitlines():
        found = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", line)
        if found:
            by_package[found.group(2).split(".")[0]] += int(found.group(1)) / 1000
    return sorted(by_package.items(), key=lambda item: -item[1])


def _ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="5 runs each; under 40 s")
    parser.add_argument("--runs", type=int, help="cold starts of each handler (default 15, 5)")
    args = parser.parse_args()
    runs = args.runs or (5 if args.quick else 15)
    started = time.monotonic()
    conn, tables = _setup()
    contenders = {"ours": (OURS, "customer_mirror"), "typical": (TYPICAL, TYPICAL_TABLE)}
    results: dict[str, list[Run]] = {name: [] for name in contenders}
    with tempfile.TemporaryDirectory(prefix="coldstart-") as tmp:
        statements = Path(tmp) / "mirror-statements.postgresql.json"
        statements.write_text(dump_statements(load_manifest(MANIFEST), "postgresql"))
        env = _environment(statements)
        # One unmeasured start of each: .pyc written, files in the page cache.
        for module, table in contenders.values():
            _reset(conn, tables)
            cold_start(module, env)
            _check(conn, table)
        for i in range(runs):
            order = list(contenders) if i % 2 == 0 else list(reversed(contenders))
            for name in order:
                module, table = contenders[name]
                _reset(conn, tables)
                results[name].append(cold_start(module, env)[0])
                _check(conn, table)
        breakdown = {}
        for name, (module, _) in contenders.items():
            _reset(conn, tables)
            breakdown[name] = import_breakdown(cold_start(module, env, ("-X", "importtime"))[1])
    conn.close()

    figures: dict[str, float] = {}
    print(f"cold starts to the first batch served, median of {runs} each (ms)")
    heads = ("total", "startup", "import", "batch", "exit", "cpu", "min")
    print(f"{'':>8} " + " ".join(f"{h:>8}" for h in heads))
    for name, measured in results.items():
        row = {
            "total": _ms([r.total for r in measured]),
            "startup": _ms([r.startup for r in measured]),
            "import": _ms([r.imports for r in measured]),
            "first_batch": _ms([r.first_batch for r in measured]),
            "exit": _ms([r.exit for r in measured]),
            "cpu": _ms([r.cpu for r in measured]),
            "total_min": min(r.total for r in measured) * 1000,
        }
        print(f"{name:>8} " + " ".join(f"{v:>8.0f}" for v in row.values()))
        figures |= {f"{name}_{k}_ms": round(v, 1) for k, v in row.items()}
    ratio = figures["ours_total_ms"] / figures["typical_total_ms"]
    ratio_min = figures["ours_total_min_ms"] / figures["typical_total_min_ms"]
    ratio_cpu = figures["ours_cpu_ms"] / figures["typical_cpu_ms"]
    print(
        f"ratio ours/typical: {ratio:.2f} (target <= 0.5); "
        f"of the fastest runs {ratio_min:.2f}, of CPU time {ratio_cpu:.2f}"
    )
    loaded = sorted({m for r in results["ours"] for m in r.heavy})
    heavy = [m for m in loaded if m in ("boto3", "sqlalchemy")]
    print(
        "our handler's first batch imported "
        + (", ".join(heavy) + " (it should not)" if heavy else "neither boto3 nor sqlalchemy")
        + (f"; in sys.modules: {', '.join(loaded)}" if loaded else "")
    )
    for name, packages in breakdown.items():
        top = ", ".join(f"{p} {ms:.0f}" for p, ms in packages[:5])
        print(f"{name}: largest self import times by package (-X importtime, ms): {top}")
    load = os.getloadavg()[0]
    took = time.monotonic() - started
    print(f"total {took:.1f} s, load average {load:.2f} on {os.cpu_count()} CPUs")
    summary: dict[str, Any] = {
        "bench": "coldstart",
        "quick": args.quick,
        "runs": runs,
        "ratio_vs_typical": round(ratio, 3),
        "ratio_vs_typical_min": round(ratio_min, 3),
        "ratio_vs_typical_cpu": round(ratio_cpu, 3),
    }
    summary |= figures
    summary["ours_imports_boto3_or_sqlalchemy"] = bool(heavy)
    summary["ours_modules_loaded"] = loaded
    summary["load_average_1m"] = round(load, 2)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
