"""The apply handler's cold start: what importing it costs, against a bare interpreter.

Each figure is the median of fresh processes started in this run (these
machines are noisy; a ratio to a baseline measured alongside holds where an
absolute time would not). Today the import takes about 12 times a bare
interpreter's start; the bound is 30, so a heavy import creeping in (SQLAlchemy
alone about doubles it) fails here, and one of the modules the cold start must
never load fails at once.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

import pytest

ROUNDS = 7
BOUND = 30.0
HEAVY = ("boto3", "sqlalchemy", "psycopg2", "psycopg", "pymysql", "replication.dlq")


def _started(code: str) -> float:
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return time.perf_counter() - began


@pytest.mark.performance
def test_importing_the_apply_handler_stays_light() -> None:
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, sys; import replication.consumer.handler; "
            "print(json.dumps(sorted(sys.modules)))",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    modules = json.loads(loaded.stdout)
    assert [m for m in modules if m.split(".")[0] in HEAVY or m in HEAVY] == []

    bare = statistics.median(_started("pass") for _ in range(ROUNDS))
    handler = statistics.median(
        _started("import replication.consumer.handler") for _ in range(ROUNDS)
    )
    ratio = handler / bare
    assert ratio <= BOUND, (
        f"importing the handler takes {ratio:.1f}x a bare interpreter's start "
        f"({handler * 1000:.0f} ms against {bare * 1000:.0f} ms; bound {BOUND}x)"
    )
