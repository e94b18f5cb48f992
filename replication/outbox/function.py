"""The relay as a Lambda function: ``replication.outbox.function.lambda_handler``.

Configured by environment variables (the rendered template sets them):
``REPLICATION_MANIFEST`` (the owner's replication.yaml), its database
(``<SERVICE>_DATABASE_SECRET_ARN`` or the URL variable the manifest names),
``REPLICATION_PREFIX``, ``REPLICATION_PAYLOAD_BUCKET``, and:

- ``REPLICATION_RELAY_MODE``: ``follow`` (the default) drains, then keeps
  waiting for new rows (PostgreSQL ``LISTEN/NOTIFY``, else polling every
  ``REPLICATION_RELAY_POLL_SECONDS``, default 0.2) and publishes each within
  a second of its commit, until ``REPLICATION_RELAY_MARGIN_MS`` (10 s) before
  the timeout. A schedule every minute with a timeout above a minute keeps
  one invocation following at all times, the next one starting before the
  last one stops. ``drain`` publishes what is there and returns: the cheap
  mode, a change then waits up to the schedule's period.
- Each invocation ends with one EMF document (namespace ``Replication``,
  dimension ``service``): ``RelayPublished``, ``RelayFailed``,
  ``RelayOffloaded``, ``OutboxBacklog`` and ``OutboxOldestPendingSeconds``,
  which the template alarms on.

The Lambda context must provide ``get_remaining_time_in_millis()``.
"""

from __future__ import annotations

__all__ = ["emit_metrics", "lambda_handler"]

import os
import threading
from pathlib import Path
from typing import Any

from replication.errors import ConfigurationError
from replication.outbox.relay import Relay, RelayStats

NAMESPACE = "Replication"
_LISTEN_RECHECK_SECONDS = 5.0
MODES = ("follow", "drain")
_relay: Relay | None = None
_service = ""


def _build() -> Relay:
    global _relay, _service
    if _relay is None:  # built on the first invocation, reused while warm
        from replication.contract_modules import manifest_path
        from replication.manifest import load_manifest
        from replication.outbox.runner import RelaySettings, build_relay

        manifest = load_manifest(Path(manifest_path()))
        _relay = build_relay(manifest, RelaySettings.from_environment())
        _service = manifest.service
    return _relay


def emit_metrics(service: str, stats: RelayStats, backlog: int, oldest_seconds: float) -> None:
    """Print one EMF document (CloudWatch reads it from the function's output)."""
    from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

    metrics = EphemeralMetrics(namespace=NAMESPACE, service=service)
    metrics.add_metric(name="RelayPublished", unit=MetricUnit.Count, value=stats.published)
    metrics.add_metric(name="RelaySuperseded", unit=MetricUnit.Count, value=stats.superseded)
    metrics.add_metric(name="RelayFailed", unit=MetricUnit.Count, value=stats.failed)
    metrics.add_metric(name="RelayOffloaded", unit=MetricUnit.Count, value=stats.offloaded)
    metrics.add_metric(name="OutboxBacklog", unit=MetricUnit.Count, value=backlog)
    metrics.add_metric(
        name="OutboxOldestPendingSeconds", unit=MetricUnit.Seconds, value=oldest_seconds
    )
    metrics.flush_metrics()


def _follow(relay: Relay, stats: RelayStats, left_ms: Any, margin_ms: int) -> None:
    """Wait for new rows and publish them until ``margin_ms`` before the timeout."""
    from replication.outbox.runner import _Waiter

    poll = float(os.environ.get("REPLICATION_RELAY_POLL_SECONDS", "0.2"))
    stop = threading.Event()
    waiter = _Waiter.open(relay, poll)
    try:
        while left_ms() > margin_ms:
            if waiter.broken:
                waiter = _Waiter.open(relay, poll)
            # A NOTIFY wakes a listener at once: it looks again only every few seconds
            # (for rows whose retry time has come), where polling looks every 0.2 s.
            interval = _LISTEN_RECHECK_SECONDS if waiter.listening else poll
            waiter.poll_interval = max(0.05, min(interval, (left_ms() - margin_ms) / 1000))
            waiter.wait(stop)
            stats.add(relay.drain(should_stop=lambda: left_ms() <= margin_ms))
    finally:
        waiter.close()


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Publish the outbox (and, in follow mode, every row committed until near the timeout)."""
    mode = os.environ.get("REPLICATION_RELAY_MODE", "follow")
    if mode not in MODES:
        raise ConfigurationError(f"REPLICATION_RELAY_MODE is {mode!r}: use follow or drain")
    relay = _build()
    left_ms = context.get_remaining_time_in_millis
    # Stop 10 s before the timeout, or at a quarter of what is left for short timeouts;
    # one cycle always runs.
    configured = int(os.environ.get("REPLICATION_RELAY_MARGIN_MS", "10000"))
    margin_ms = min(configured, left_ms() // 4)
    cycles = [0]

    def should_stop() -> bool:
        cycles[0] += 1
        return cycles[0] > 1 and left_ms() < margin_ms

    stats = relay.drain(should_stop=should_stop)
    if mode == "follow":
        _follow(relay, stats, left_ms, margin_ms)
    purged = relay.purge_published() if left_ms() >= margin_ms // 2 else 0
    backlog, oldest = relay.backlog()
    emit_metrics(_service, stats, backlog, oldest)
    return {
        "mode": mode,
        "purged": purged,
        "published": stats.published,
        "superseded": stats.superseded,
        "failed": stats.failed,
        "offloaded": stats.offloaded,
        "cycles": stats.cycles,
        "backlog": backlog,
    }
