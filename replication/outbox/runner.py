"""Running a relay: wiring from a manifest, the scheduled Lambda, the long-running process.

- :func:`build_relay` wires a relay for one owner service from its manifest and
  the standard AWS configuration (``AWS_ENDPOINT_URL``, profiles, regions).
- the Lambda function is :mod:`replication.outbox.function`.
- :func:`run_forever` is ``replication relay``: it drains, then waits for
  PostgreSQL ``NOTIFY`` (or polls other databases), reports throughput, and
  stops between cycles on SIGTERM/SIGINT, so nothing is lost or marked twice.
  It logs JSON lines, or sentences on a terminal (:mod:`replication.logs`).
"""

from __future__ import annotations

__all__ = ["RelaySettings", "build_relay", "run_forever"]

import contextlib
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from replication.dburl import engine_url
from replication.dialects import dialect_named
from replication.errors import ConfigurationError
from replication.logs import ProcessLog
from replication.manifest import Manifest
from replication.outbox.publisher import SnsPublisher
from replication.outbox.relay import Relay, RelayConfig, RelayStats, TopicRouter
from replication.outbox.table import NOTIFY_CHANNEL
from replication.topology.naming import DEFAULT_PREFIX


@dataclass(frozen=True)
class RelaySettings:
    """Where a relay publishes, beyond what the manifest says."""

    prefix: str = DEFAULT_PREFIX
    payload_bucket: str | None = None
    batch_size: int = 200

    @classmethod
    def from_environment(cls) -> RelaySettings:
        """Settings from ``REPLICATION_PREFIX``, ``_PAYLOAD_BUCKET`` and ``_RELAY_BATCH_SIZE``."""
        return cls(
            prefix=os.environ.get("REPLICATION_PREFIX", DEFAULT_PREFIX),
            payload_bucket=os.environ.get("REPLICATION_PAYLOAD_BUCKET") or None,
            batch_size=int(os.environ.get("REPLICATION_RELAY_BATCH_SIZE", "200")),
        )


def build_relay(manifest: Manifest, settings: RelaySettings, *, url: str | None = None) -> Relay:
    """A relay for the entities ``manifest``'s service owns."""
    import sqlalchemy as sa

    from replication.aws_clients import client
    from replication.awsenv import locate
    from replication.consumer.database import url_for
    from replication.payloads import PayloadStore

    if not manifest.owns:
        raise ConfigurationError(f"service {manifest.service} owns no entity: nothing to relay")
    where = locate()
    router = TopicRouter.for_manifest(
        manifest,
        region=where.region,
        account=where.account,
        prefix=settings.prefix,
        partition=where.partition,
    )
    payloads = None
    if settings.payload_bucket:
        payloads = PayloadStore(
            client("s3", where.session), settings.payload_bucket, owner=manifest.service
        )
    engine = sa.create_engine(engine_url(url or url_for(manifest)), pool_pre_ping=True)
    return Relay(
        engine,
        SnsPublisher(client("sns", where.session)),
        router,
        payloads=payloads,
        config=RelayConfig(batch_size=settings.batch_size),
    )


class _Waiter:
    """Sleeps until the outbox may have new rows: a PostgreSQL NOTIFY, or a poll interval.

    The listening connection is psycopg2's or psycopg 3's, whichever the relay's
    engine uses.
    """

    def __init__(self, relay: Relay, poll_interval: float, *, listen: bool = True) -> None:
        self.poll_interval = poll_interval
        self.broken = False
        self._listener: Any = None
        self._psycopg3 = False
        if listen and dialect_named(relay.engine.dialect.name).notifies:
            raw = relay.engine.raw_connection()
            driver: Any = raw.driver_connection
            driver.autocommit = True
            driver.cursor().execute(f"LISTEN {NOTIFY_CHANNEL}")
            self._raw = raw
            self._listener = driver
            self._psycopg3 = type(driver).__module__.split(".", 1)[0] == "psycopg"

    @classmethod
    def open(cls, relay: Relay, poll_interval: float) -> _Waiter:
        """A waiter that listens where it can, and polls when the database does not answer."""
        try:
            return cls(relay, poll_interval)
        except Exception:
            return cls(relay, poll_interval, listen=False)

    @property
    def listening(self) -> bool:
        return self._listener is not None

    def wait(self, stop: threading.Event) -> None:
        if self._listener is None:
            stop.wait(self.poll_interval)
            return
        deadline = time.monotonic() + self.poll_interval
        try:
            # Short slices, so that a stop request is seen within half a second.
            while not stop.is_set() and time.monotonic() < deadline:
                if self._notified(min(0.5, max(0.0, deadline - time.monotonic()))):
                    return
        except Exception:  # the listening connection broke: listen again on a new one
            self.close()
            self.broken = True

    def _notified(self, timeout: float) -> bool:
        """Whether a NOTIFY arrived within ``timeout`` seconds; consumes every one received."""
        listener = self._listener
        if self._psycopg3:
            if not list(listener.notifies(timeout=timeout, stop_after=1)):
                return False
            list(listener.notifies(timeout=0))  # the rest, already received
            return True
        ready, _, _ = select.select([listener], [], [], timeout)
        if not ready:
            return False
        listener.poll()
        if not listener.notifies:
            return False
        listener.notifies.clear()
        return True

    def close(self) -> None:
        if self._listener is not None:
            self._listener = None
            with contextlib.suppress(Exception):
                # Discard, not return to the pool: the connection is still LISTENing.
                self._raw.invalidate()


def run_forever(
    relay: Relay,
    *,
    poll_interval: float = 5.0,
    report_every: float = 10.0,
    purge_every: float = 3600.0,
    out: TextIO | None = None,
    log: ProcessLog | None = None,
    stop: threading.Event | None = None,
    install_signals: bool = True,
) -> RelayStats:
    """Relay until SIGTERM/SIGINT (or ``stop``); returns the totals.

    It says what it does through ``log``, or in sentences to ``out`` (default stdout).
    """
    log = log or ProcessLog(out=out or sys.stdout)
    stop = stop or threading.Event()
    if install_signals:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, _stopper(stop, log))
    waiter = _Waiter.open(relay, poll_interval)
    mode = "LISTEN/NOTIFY" if waiter.listening else f"polling every {poll_interval:g} s"
    known: dict[str, Any] = {}
    try:
        known["pending"] = relay.pending()
        pending = str(known["pending"])
    except Exception as exc:  # the database is down at start: the loop retries
        pending = f"unknown ({exc})"
        known["error"] = str(exc)
    log.info(
        "relay started",
        f"relay started ({mode}); {pending} row(s) pending",
        mode="listen" if waiter.listening else "poll",
        poll_interval_s=poll_interval,
        **known,
    )
    total = RelayStats()
    started = last_report = time.monotonic()
    last_purge = started - purge_every  # purge once at start
    reported = 0
    failures = 0
    try:
        while not stop.is_set():
            try:
                total.add(relay.drain(should_stop=stop.is_set))
                now = time.monotonic()
                if now - last_report >= report_every:
                    rate = (total.published - reported) / (now - last_report)
                    backlog = relay.pending()
                    log.info(
                        "relay progress",
                        f"published {total.published} ({rate:.0f}/s), superseded "
                        f"{total.superseded}, failed {total.failed}, pending {backlog}",
                        published=total.published,
                        per_second=round(rate, 1),
                        superseded=total.superseded,
                        failed=total.failed,
                        pending=backlog,
                    )
                    last_report, reported = now, total.published
                if now - last_purge >= purge_every and not stop.is_set():
                    purged = relay.purge_published()
                    if purged:
                        log.info(
                            "relay purged",
                            f"purged {purged} published row(s) past retention",
                            purged=purged,
                        )
                    last_purge = now
                failures = 0
            except Exception as exc:  # database unreachable, deadlock: keep going
                failures += 1
                delay = float(min(60, 2**failures))
                log.warning(
                    "relay cycle failed",
                    f"relay cycle failed ({exc}); retrying in {delay:.0f} s",
                    error=str(exc),
                    retry_in_s=delay,
                )
                waiter.close()
                stop.wait(delay)
                waiter = _Waiter.open(relay, poll_interval)
                continue
            if waiter.broken:
                waiter = _Waiter.open(relay, poll_interval)
                continue  # drain what arrived while nobody listened
            if not stop.is_set():
                waiter.wait(stop)
    finally:
        waiter.close()
    elapsed = time.monotonic() - started
    known = {}
    try:
        known["pending"] = relay.pending()
        pending = str(known["pending"])
    except Exception:  # the database is down at shutdown
        pending = "unknown"
    log.info(
        "relay stopped",
        f"relay stopped: published {total.published} in {elapsed:.1f} s, superseded "
        f"{total.superseded}, failed {total.failed}, pending {pending}",
        published=total.published,
        superseded=total.superseded,
        seconds=round(elapsed, 1),
        failed=total.failed,
        **known,
    )
    return total


def _stopper(stop: threading.Event, log: ProcessLog) -> Callable[[int, Any], None]:
    def handle(signum: int, frame: Any) -> None:
        stop.set()  # first: saying so may fail while the main loop says something
        name = signal.Signals(signum).name
        with contextlib.suppress(Exception):
            log.info("relay stopping", f"{name}: finishing the current cycle", signal=name)

    return handle
