"""The main job: ``replication demo`` on the embedded default, and on PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.databases import POSTGRES_URL


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.pop("REPLICATION_DEMO_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "replication.cli", "demo", *args],
        cwd="/",  # the demo must not depend on the current folder
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def check_output(out: str) -> None:
    assert "8 resources created" in out
    assert "crm: 330 events: 120 published, 210 superseded by a newer version" in out
    assert "catalog: 74 events: 40 published, 34 superseded by a newer version" in out
    assert "customer_mirror: 110 rows + 10 tombstones; crm has 110 customers: equal" in out
    assert "product_mirror: 36 rows + 4 tombstones; catalog has 36 products: equal" in out
    assert "the mirror now says 'Ada Lovelace-Byron'" in out
    assert "300 orders in one local query" in out
    assert "(600 cross-service calls)" in out
    assert "source 'attacker' is not the owner of crm.customer" in out
    assert "replication_failures: 1 row(s) [('permanent', 1)]" in out
    assert "3 of 64 buckets differ: 1 missing, 1 older, 1 differs" in out
    assert "--repair: 3 snapshot(s) and 0 tombstone(s) sent to demo-orders--crm-customer-v1" in out
    assert "reconcile again: 110 owner rows, 110 mirror rows, 0 of 64 buckets differ: equal" in out
    assert "every mirror equals its owner" in out


def test_the_demo_runs_on_the_embedded_default() -> None:
    result = run_demo()
    assert result.returncode == 0, result.stdout + result.stderr
    check_output(result.stdout)
    assert "SQLite files in" in result.stdout


@pytest.mark.postgresql
def test_the_demo_runs_on_postgresql() -> None:
    result = run_demo("--database-url", POSTGRES_URL)
    assert result.returncode == 0, result.stdout + result.stderr
    check_output(result.stdout)
    assert "PostgreSQL schemas" in result.stdout


def test_the_demo_refuses_a_database_it_does_not_support() -> None:
    result = run_demo("--database-url", "mysql://root@127.0.0.1/test")
    assert result.returncode == 1
    assert "--database-url must be a postgresql:// URL" in result.stderr
