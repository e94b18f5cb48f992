"""``replication relay`` and ``replication consume`` log JSON lines, or sentences on a terminal.

Off a terminal every line either command writes, on stdout or stderr, is one
JSON object of the Powertools Logger the Lambda functions use; the level comes
from ``REPLICATION_LOG_LEVEL`` or ``POWERTOOLS_LOG_LEVEL``. On a terminal
(a pseudo-terminal here) the relay says the same in sentences.
"""

from __future__ import annotations

import io
import json
import os
import pty
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from replication.consumer.failures_table import failures_table
from replication.errors import ConfigurationError
from replication.logs import ProcessLog, json_wanted
from replication.manifest import load_manifests
from replication.mirror.tables import mirror_table
from replication.topology.aws import AwsTopology
from replication.topology.model import build_topology
from tests.aws import ACCOUNT, REGION, MotoServer, moto_server
from tests.owners import engine_for, reset_owner, sell
from tests.paths import ROOT

KEYS = {"level", "location", "message", "timestamp", "service"}
_OURS = ("REPLICATION_LOG_LEVEL", "POWERTOOLS_LOG_LEVEL", "REPLICATION_LOG_FORMAT")


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


@dataclass
class Lines:
    """An owner (catalog) with two sold products, a consumer (orders), their topology."""

    env: dict[str, str]
    orders: sa.Engine

    def run(self, *command: str, **extra: str) -> subprocess.CompletedProcess[str]:
        """``replication <command>`` in a child process whose output is not a terminal."""
        return subprocess.run(
            [sys.executable, "-m", "replication.cli", *command, "--manifests", "examples"],
            cwd=ROOT,
            env={**self.env, **extra},
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )

    def products(self) -> list[tuple[str, int]]:
        with self.orders.connect() as conn:
            rows = conn.execute(sa.text("SELECT sku, _version FROM product_mirror ORDER BY sku"))
            return [(str(sku), int(version)) for sku, version in rows]


@pytest.fixture
def lines(moto: MotoServer, tmp_path: Path) -> Iterator[Lines]:
    prefix = f"logs{uuid.uuid4().hex[:6]}"
    manifests = {m.service: m for m in load_manifests([ROOT / "examples"])}
    AwsTopology(moto.client("sns"), moto.client("sqs"), region=REGION, account=ACCOUNT).apply(
        build_topology(manifests.values(), prefix=prefix)
    )
    catalog = engine_for("sqlite", tmp_path)
    reset_owner(catalog)
    sell(catalog, "SKU-1", 1)
    sell(catalog, "SKU-2", 2)
    orders = sa.create_engine(f"sqlite:///{tmp_path / 'orders.sqlite'}")
    metadata = sa.MetaData()
    for declaration in manifests["orders"].mirrors:
        mirror_table(declaration, metadata)
    failures_table(metadata)
    metadata.create_all(orders)
    env = {k: v for k, v in moto.env().items() if k not in _OURS}
    env.update(
        CATALOG_DATABASE_URL=catalog.url.render_as_string(False),
        ORDERS_DATABASE_URL=orders.url.render_as_string(False),
        REPLICATION_PREFIX=prefix,
        PYTHONPATH=str(ROOT),
    )
    yield Lines(env, orders)
    catalog.dispose()
    orders.dispose()


def json_lines(done: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    """Every line of stdout and stderr, each parsed as one JSON object."""
    assert done.returncode == 0, done.stdout + done.stderr
    parsed = []
    for line in (done.stdout + done.stderr).splitlines():
        document = json.loads(line)
        assert isinstance(document, dict), line
        parsed.append(document)
    return parsed


def logs_of(documents: list[dict[str, Any]], service: str) -> list[dict[str, Any]]:
    """The log lines (EMF metrics documents aside), each checked for the logger's keys."""
    logs = [d for d in documents if "_aws" not in d]
    for log in logs:
        assert log.keys() >= KEYS, log
        assert log["service"] == service, log
    return logs


def test_relay_and_consume_write_only_json_lines_off_a_terminal(lines: Lines) -> None:
    relayed = logs_of(json_lines(lines.run("relay", "--service", "catalog", "--once")), "catalog")
    [drained] = relayed
    assert (drained["level"], drained["message"]) == ("INFO", "relay drained")
    assert (drained["published"], drained["failed"], drained["pending"]) == (2, 0, 0)
    assert drained["location"].startswith("cmd_relay:")

    consumed = lines.run("consume", "--service", "orders", "--drain", "--wait", "0", "--metrics")
    documents = json_lines(consumed)
    assert any("_aws" in d for d in documents)  # --metrics: EMF documents among the logs
    logs = logs_of(documents, "orders")
    applied = [log for log in logs if log["message"] == "applied"]
    assert sorted(log["key"] for log in applied) == ["SKU-1", "SKU-2"]
    assert {log["entity"] for log in applied} == {"catalog.product"}
    last = logs[-1]
    assert (last["level"], last["message"]) == ("INFO", "consumer drained")
    assert (last["received"], last["deleted"], last["retried"]) == (2, 2, 0)
    assert lines.products() == [("SKU-1", 1), ("SKU-2", 1)]


def test_a_drain_that_leaves_records_for_retry_exits_4(lines: Lines) -> None:
    assert lines.run("relay", "--service", "catalog", "--once").returncode == 0
    with lines.orders.begin() as conn:  # the apply fails, transiently, for every record
        conn.execute(sa.text("DROP TABLE product_mirror"))

    consumed = lines.run("consume", "--service", "orders", "--drain", "--wait", "0")

    assert consumed.returncode == 4, consumed.stdout + consumed.stderr
    said = (consumed.stdout + consumed.stderr).splitlines()
    [drained] = [d for d in map(json.loads, said) if d.get("message") == "consumer drained"]
    assert (drained["received"], drained["deleted"], drained["retried"]) == (2, 0, 2)


def test_warning_level_silences_the_info_lines(lines: Lines) -> None:
    relayed = lines.run("relay", "--service", "catalog", "--once", POWERTOOLS_LOG_LEVEL="WARNING")
    assert json_lines(relayed) == []
    consumed = lines.run(
        "consume", "--service", "orders", "--drain", "--wait", "0", POWERTOOLS_LOG_LEVEL="WARNING"
    )
    assert json_lines(consumed) == []
    # Silent, not idle: both did their work.
    assert lines.products() == [("SKU-1", 1), ("SKU-2", 1)]


def test_the_long_running_consumer_logs_start_progress_and_stop_as_json(lines: Lines) -> None:
    command = ["consume", "--service", "orders", "--manifests", "examples", "--wait", "1"]
    process = subprocess.Popen(
        [sys.executable, "-m", "replication.cli", *command],
        cwd=ROOT,
        env={**lines.env, "REPLICATION_LOG_LEVEL": "INFO"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = json.loads(process.stdout.readline())
        assert first["message"] == "consuming", first
        assert len(first["queues"]) == 2
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    logs = logs_of(json_lines(subprocess.CompletedProcess([], 0, out, err)), "orders")
    messages = [log["message"] for log in logs]
    assert messages[0] == "consumer stopping"
    assert logs[0]["signal"] == "SIGTERM"
    assert messages[-1] == "consumer stopped"
    assert {"received", "deleted", "seconds"} <= logs[-1].keys()


def test_on_a_terminal_the_relay_says_it_in_a_sentence(lines: Lines) -> None:
    controller, terminal = pty.openpty()
    command = ["relay", "--service", "catalog", "--manifests", "examples", "--once"]
    process = subprocess.Popen(
        [sys.executable, "-m", "replication.cli", *command],
        cwd=ROOT,
        env=lines.env,
        stdout=terminal,
        stderr=terminal,
    )
    os.close(terminal)
    said = b""
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            said += chunk
        assert process.wait(timeout=60) == 0, said
    finally:
        os.close(controller)
        if process.poll() is None:
            process.kill()
    assert said.decode().splitlines() == ["published 2, superseded 0, failed 0, pending 0"]


def test_the_format_follows_the_terminal_unless_the_variable_names_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("REPLICATION_LOG_FORMAT", raising=False)
    assert json_wanted(io.StringIO()) is True  # not a terminal
    monkeypatch.setenv("REPLICATION_LOG_FORMAT", "text")
    assert json_wanted(io.StringIO()) is False
    monkeypatch.setenv("REPLICATION_LOG_FORMAT", "JSON")
    assert json_wanted(io.StringIO()) is True
    monkeypatch.setenv("REPLICATION_LOG_FORMAT", "yaml")
    with pytest.raises(ConfigurationError, match="REPLICATION_LOG_FORMAT is 'yaml'"):
        json_wanted(io.StringIO())


def test_sentences_honour_the_level_too() -> None:
    out = io.StringIO()
    log = ProcessLog(out=out, level="warning")
    log.info("relay progress", "published 3 (1/s), failed 0, pending 0", published=3)
    log.warning("relay cycle failed", "relay cycle failed (down); retrying in 2 s", retry_in_s=2)
    assert out.getvalue() == "relay cycle failed (down); retrying in 2 s\n"
    with pytest.raises(ConfigurationError, match="log level 'LOUD'"):
        ProcessLog(out=out, level="LOUD")


def test_a_json_line_names_the_line_that_logged_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REPLICATION_LOG_FORMAT", "json")
    monkeypatch.delenv("REPLICATION_LOG_LEVEL", raising=False)
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "INFO")
    log = ProcessLog.for_command("logs-test", text_to=sys.stderr)
    log.info("relay started", "relay started (polling every 5 s)", mode="poll", pending=0)
    log.error("gave up", why="a reason")
    captured = capsys.readouterr()
    assert captured.err == ""
    first, second = (json.loads(line) for line in captured.out.splitlines())
    assert first.keys() >= KEYS
    assert (first["message"], first["mode"], first["pending"]) == ("relay started", "poll", 0)
    assert first["location"].startswith("test_a_json_line_names_the_line_that_logged_it:")
    assert (second["level"], second["why"]) == ("ERROR", "a reason")
