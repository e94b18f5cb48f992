"""Scheduled reconciliation: drift as CloudWatch metrics, from Lambda or a runner.

``lambda_handler`` runs on a schedule (an EventBridge rule): for each target
``consumer:entity`` (the event's ``targets``, or ``REPLICATION_RECONCILE``,
comma-separated) it reconciles the consumer's mirror with its owner and emits,
in the Embedded Metric Format (namespace ``Replication``, dimensions
``service`` = the consumer and ``entity``): ``MirrorMissing``, ``MirrorExtra``,
``MirrorOlder``, ``MirrorDiffers``, ``MirrorAhead``, ``MirrorDrift`` (their
sum), ``MirrorRows`` and ``ReconcileSeconds``. An alarm on ``MirrorDrift > 0``
pages whoever owns the pair. ``replication reconcile --metrics`` emits the same
from a runner or a cron job.

Manifests are read from ``REPLICATION_MANIFESTS`` (default: the function's
folder); database URLs from the variables the manifests name.
"""

from __future__ import annotations

__all__ = ["ReconcileFailedError", "emit_metrics", "lambda_handler", "reconcile_target"]

import logging
import os
from pathlib import Path
from typing import Any

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from replication.consumer.observe import NAMESPACE
from replication.errors import ConfigurationError, ReplicationError
from replication.sync.reconcile import Reconciliation

_log = logging.getLogger(__name__)
_NAMES = {
    "missing": "MirrorMissing",
    "extra": "MirrorExtra",
    "older": "MirrorOlder",
    "differs": "MirrorDiffers",
    "ahead": "MirrorAhead",
}


def emit_metrics(result: Reconciliation, *, consumer: str, entity: str) -> None:
    """Print ``result`` as one EMF document (CloudWatch reads Lambda's and agents' output)."""
    metrics = EphemeralMetrics(namespace=NAMESPACE, service=consumer)
    metrics.add_dimension(name="entity", value=entity)
    for kind, name in _NAMES.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=result.counts[kind])
    metrics.add_metric(name="MirrorDrift", unit=MetricUnit.Count, value=result.total)
    metrics.add_metric(name="MirrorRows", unit=MetricUnit.Count, value=result.mirror_rows)
    metrics.add_metric(name="ReconcileSeconds", unit=MetricUnit.Seconds, value=result.seconds)
    metrics.flush_metrics()


def reconcile_target(target: str, manifests: list[Path]) -> tuple[str, str, Reconciliation]:
    """Reconcile ``consumer:entity``; returns the consumer, the entity and the result."""
    from replication.sync.wiring import open_pair

    consumer, _, entity = target.partition(":")
    if not consumer or not entity:
        raise ConfigurationError(f"a target is 'consumer:entity', got {target!r}")
    with open_pair(manifests, entity=entity, consumer=consumer) as pair:
        return consumer, entity, pair.compare()


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Reconcile every target and emit its drift as metrics; returns the counts."""
    targets = event.get("targets") or [
        t.strip() for t in os.environ.get("REPLICATION_RECONCILE", "").split(",") if t.strip()
    ]
    if not targets:
        raise ConfigurationError(
            "nothing to reconcile: give 'targets' in the event or set REPLICATION_RECONCILE "
            "(consumer:entity, comma-separated)"
        )
    manifests = [Path(os.environ.get("REPLICATION_MANIFESTS", "."))]
    results: list[dict[str, Any]] = []
    failed: list[str] = []
    for target in targets:  # one failing target does not cost the others their metrics
        try:
            consumer, entity, result = reconcile_target(target, manifests)
        except Exception as exc:
            _log.exception("reconciling %s failed", target)
            failed.append(f"{target}: {exc}")
            continue
        emit_metrics(result, consumer=consumer, entity=entity)
        results.append(
            {"consumer": consumer, "entity": entity, "drift": result.total, **result.counts}
        )
    if failed:
        raise ReconcileFailedError("; ".join(failed))
    return {"results": results}


class ReconcileFailedError(ReplicationError):
    """Some targets could not be reconciled (the others' metrics were emitted)."""
