"""Run modes of the relay: the long-running command and the scheduled Lambda handler."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import replication.outbox.function as function
import replication.outbox.runner as runner
from tests.aws import CREDENTIALS, MotoServer, bodies, drain_queue, moto_server, subscribed_queue
from tests.owners import engine_for, reset_owner, sell
from tests.paths import ROOT

TOPIC = "dev-catalog-product-v1"


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


def catalog_queue(moto: MotoServer) -> str:
    arn = moto.client("sns").create_topic(Name=TOPIC)["TopicArn"]
    return subscribed_queue(moto, arn, f"dev-orders--catalog-{uuid.uuid4().hex[:8]}")


def wait_for_messages(moto: MotoServer, queue: str, count: int, timeout: float) -> list[Any]:
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got += bodies(drain_queue(moto, queue, idle_rounds=1))
        time.sleep(0.1)
    return got


def start_relay(
    moto: MotoServer, url: str, *extra: str
) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """The relay command, its output a pipe (so JSON lines); its first line, parsed."""
    env = {**moto.env(), "CATALOG_DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
    for name in ("REPLICATION_LOG_LEVEL", "POWERTOOLS_LOG_LEVEL", "REPLICATION_LOG_FORMAT"):
        env.pop(name, None)
    process = subprocess.Popen(
        [sys.executable, "-m", "replication.cli", "relay", "--service", "catalog", *extra],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    first = process.stdout.readline()
    assert '"relay started"' in first, first + (process.stderr.read() if process.stderr else "")
    return process, json.loads(first)


def logged(out: str) -> dict[str, dict[str, Any]]:
    """The relay's JSON lines by message (the last of each), every line checked."""
    lines = [json.loads(line) for line in out.splitlines()]
    for line in lines:
        assert {"level", "location", "message", "timestamp", "service"} <= line.keys(), line
        assert line["service"] == "catalog"
    return {line["message"]: line for line in lines}


@pytest.mark.parametrize(
    ("dialect", "mode", "extra"),
    [
        ("postgresql", "listen", ["--poll-interval", "120"]),
        ("mysql", "poll", ["--poll-interval", "0.3"]),
    ],
)
def test_the_relay_command_publishes_new_rows_and_stops_cleanly_on_sigterm(
    dialect: str, mode: str, extra: list[str], moto: MotoServer, tmp_path: Path
) -> None:
    engine = engine_for(dialect, tmp_path)
    reset_owner(engine)
    queue = catalog_queue(moto)
    process, started = start_relay(moto, engine.url.render_as_string(False), *extra)
    assert (started["level"], started["mode"], started["pending"]) == ("INFO", mode, 0)
    assert started["poll_interval_s"] == float(extra[1])
    try:
        events = [sell(engine, f"SKU-{n}", n) for n in range(5)]
        # With a two-minute poll interval only a NOTIFY can wake it this fast.
        got = wait_for_messages(moto, queue, 5, timeout=15)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert sorted(b["id"] for b in got) == sorted(str(e.id) for e in events)
    assert process.returncode == 0, err
    assert err == ""
    said = logged(out)
    assert said["relay stopping"]["signal"] == "SIGTERM"
    stopped = said["relay stopped"]
    assert (stopped["published"], stopped["failed"], stopped["pending"]) == (5, 0, 0)
    engine.dispose()


def test_the_relay_command_explains_a_missing_database_variable(moto: MotoServer) -> None:
    env = {k: v for k, v in moto.env().items() if k != "CATALOG_DATABASE_URL"}
    done = subprocess.run(
        [sys.executable, "-m", "replication.cli", "relay", "--service", "catalog", "--once"],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "CATALOG_DATABASE_URL (named by database.url_env in its manifest) is not set" in (
        done.stderr
    )


class LambdaContext:
    """The part of Lambda's context object the handler reads; time runs down per call."""

    def __init__(self, remaining_ms: int, step_ms: int = 0) -> None:
        self.remaining_ms = remaining_ms
        self.step_ms = step_ms

    def get_remaining_time_in_millis(self) -> int:
        now = self.remaining_ms
        self.remaining_ms -= self.step_ms
        return now


def test_the_scheduled_lambda_drains_the_outbox_and_stops_near_its_timeout(
    moto: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = engine_for("postgresql", tmp_path)
    reset_owner(engine)
    queue = catalog_queue(moto)
    for name, value in {**CREDENTIALS, "AWS_ENDPOINT_URL": moto.endpoint}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("REPLICATION_MANIFEST", str(ROOT / "examples/catalog/replication.yaml"))
    monkeypatch.setenv("CATALOG_DATABASE_URL", engine.url.render_as_string(False))
    monkeypatch.setenv("REPLICATION_RELAY_BATCH_SIZE", "5")
    monkeypatch.setattr(function, "_relay", None)
    monkeypatch.setenv("REPLICATION_RELAY_MODE", "drain")
    events = [sell(engine, f"SKU-{n}", n) for n in range(25)]

    # 2 s left, 0.6 s spent per look at the clock: the margin is a quarter (0.5 s),
    # so three cycles of five rows run before it stops.
    short = function.lambda_handler({"source": "aws.events"}, LambdaContext(2_000, 600))
    assert (short["published"], short["cycles"]) == (15, 3)

    result = function.lambda_handler({"source": "aws.events"}, LambdaContext(60_000))
    assert result["published"] == 10
    got = bodies(drain_queue(moto, queue))
    assert sorted(b["id"] for b in got) == sorted(str(e.id) for e in events)
    engine.dispose()
    with engine.connect() as conn:
        assert (
            conn.execute(
                sa.text("SELECT count(*) FROM replication_outbox WHERE published_at IS NULL")
            ).scalar()
            == 0
        )


def test_the_long_running_relay_purges_rows_past_retention(tmp_path: Path) -> None:
    import datetime as dt
    import io
    import threading

    from replication.outbox import InMemoryPublisher, Relay, TopicRoute, TopicRouter

    engine = engine_for("sqlite", tmp_path)
    reset_owner(engine)
    for n in range(3):
        sell(engine, "SKU-1", n)
    offset = [dt.timedelta(0)]
    publisher = InMemoryPublisher()
    relay = Relay(
        engine,
        publisher,
        TopicRouter({("catalog.product", 1): TopicRoute("arn:aws:sns:us-east-1:1:t")}),
        clock=lambda: dt.datetime.now(dt.UTC) + offset[0],
    )
    out = io.StringIO()
    stop = threading.Event()

    def published() -> int:
        with engine.connect() as conn:
            query = "SELECT count(*) FROM replication_outbox WHERE published_at IS NOT NULL"
            return int(conn.execute(sa.text(query)).scalar_one())

    def wait_for(condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 30
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.05)

    def later() -> None:
        # On evidence, not after guessed delays: the clock moves once the rows are marked
        # published, the relay stops once it said it purged (or after 30 s, and the asserts
        # below say what is missing).
        try:
            wait_for(lambda: published() == 3)
            offset[0] = dt.timedelta(days=8)  # the retention (7 days) has passed
            wait_for(lambda: "purged" in out.getvalue())
        finally:
            stop.set()

    threading.Thread(target=later).start()
    total = runner.run_forever(
        relay, poll_interval=0.05, purge_every=0.1, out=out, stop=stop, install_signals=False
    )

    assert (total.published, total.superseded) == (1, 2)  # one key: its newest version only
    assert len(publisher.published) == 1
    assert "purged 3 published row(s) past retention" in out.getvalue()
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM replication_outbox")).scalar() == 0


def test_the_relay_command_survives_its_database_connections_being_killed(
    moto: MotoServer, tmp_path: Path
) -> None:
    engine = engine_for("postgresql", tmp_path)
    reset_owner(engine)
    queue = catalog_queue(moto)
    name = f"relay_{uuid.uuid4().hex[:8]}"
    url = engine.url.set(query={"application_name": name}).render_as_string(False)
    process, _ = start_relay(moto, url, "--poll-interval", "120")
    try:
        sell(engine, "SKU-1", 1)
        assert len(wait_for_messages(moto, queue, 1, timeout=15)) == 1
        with engine.begin() as conn:
            killed = conn.execute(
                sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = :name"
                ),
                {"name": name},
            ).scalar()
        assert (killed or 0) >= 2  # the relay's pool and its LISTEN connection
        later = [sell(engine, f"SKU-{n}", n) for n in range(2, 6)]
        got = wait_for_messages(moto, queue, 4, timeout=30)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert sorted(b["id"] for b in got) == sorted(str(e.id) for e in later)
    assert process.returncode == 0, err
    said = logged(out)
    assert said["relay stopped"]["published"] == 5
    # Each killed connection was a failed cycle, said as a warning with its retry delay.
    failed = [json.loads(line) for line in out.splitlines() if '"relay cycle failed"' in line]
    assert all(line["level"] == "WARNING" and line["retry_in_s"] > 0 for line in failed)
    engine.dispose()


class RealContext:
    """Lambda's context with a real clock: the time left until a deadline."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
def test_the_following_lambda_publishes_each_commit_within_a_second(
    dialect: str,
    moto: MotoServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import statistics
    import threading

    engine = engine_for(dialect, tmp_path)
    reset_owner(engine)
    queue = catalog_queue(moto)
    for name, value in {**CREDENTIALS, "AWS_ENDPOINT_URL": moto.endpoint}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("REPLICATION_MANIFEST", str(ROOT / "examples/catalog/replication.yaml"))
    monkeypatch.setenv("CATALOG_DATABASE_URL", engine.url.render_as_string(False))
    monkeypatch.setenv("REPLICATION_RELAY_MARGIN_MS", "1000")
    monkeypatch.delenv("REPLICATION_RELAY_MODE", raising=False)  # follow is the default
    monkeypatch.setattr(function, "_relay", None)
    results: list[dict[str, Any]] = []
    handler = threading.Thread(
        target=lambda: results.append(function.lambda_handler({}, RealContext(7.0)))
    )
    handler.start()
    committed: dict[str, float] = {}
    received: dict[str, float] = {}
    time.sleep(1.0)  # the handler has drained the empty outbox and follows it
    for n in range(20):
        event = sell(engine, f"SKU-{n}", n)
        committed[str(event.id)] = time.monotonic()
        deadline = time.monotonic() + 0.15
        while time.monotonic() < deadline:
            for body in bodies(drain_queue(moto, queue, idle_rounds=1)):
                received.setdefault(body["id"], time.monotonic())
    for body in wait_for_messages(moto, queue, 20 - len(received), timeout=5):
        received.setdefault(body["id"], time.monotonic())
    handler.join(timeout=30)

    assert sorted(received) == sorted(committed)
    latencies = [received[k] - committed[k] for k in committed]
    assert statistics.median(latencies) < 1.0, latencies
    [result] = results
    assert (result["mode"], result["published"], result["backlog"]) == ("follow", 20, 0)
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert emf[-1]["service"] == "catalog"
    assert emf[-1]["RelayPublished"] == [20.0]
    assert emf[-1]["OutboxBacklog"] == [0.0]
    assert "OutboxOldestPendingSeconds" in emf[-1]
    engine.dispose()
