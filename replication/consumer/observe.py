"""Structured logs and CloudWatch metrics of what a consumer did with each record.

One log line per record (the Powertools Logger of :mod:`replication.logs`,
JSON) with the event id, entity, key (subject) and outcome; never the event's
data, so ``pii`` fields cannot appear. Per entity and batch, metrics in
CloudWatch embedded metric format (Powertools EMF): ``Applied``, ``Stale``,
``Deleted``, ``Failed``, ``DeadLettered`` (counts) and ``ReplicationLag`` /
``ReplicationLagMax`` (milliseconds from the event's time to its apply). Set
``POWERTOOLS_METRICS_DISABLED=true`` to silence metrics off Lambda.
"""

from __future__ import annotations

__all__ = ["Observer"]

import logging
from collections.abc import Sequence
from typing import IO, Any

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from replication.consumer.outcomes import Outcome
from replication.logs import service_logger

NAMESPACE = "Replication"
_COUNTS = {
    "Applied": ("applied",),
    "Stale": ("stale", "collapsed"),
    "Deleted": ("deleted",),
    "Failed": ("retry",),
    "DeadLettered": ("dead-lettered",),
}


class Observer:
    """Logs and measures the outcomes of one consumer service."""

    def __init__(
        self,
        service: str,
        *,
        level: str | int = "INFO",
        stream: IO[str] | None = None,
        metrics: bool = True,
    ) -> None:
        self.service = service
        self.logger = service_logger(service, level=level, stream=stream)
        self.metrics_enabled = metrics

    def batch(self, outcomes: Sequence[Outcome]) -> None:
        """Log every outcome and emit the batch's metrics per entity."""
        if self._enabled(logging.INFO):
            for outcome in outcomes:
                self._log(outcome)
        elif self._enabled(logging.WARNING):
            for outcome in outcomes:
                if outcome.status in ("retry", "dead-lettered"):
                    self._log(outcome)
        if self.metrics_enabled:
            self._metrics(outcomes)

    def _enabled(self, level: int) -> bool:
        return logging.getLogger(self.service).isEnabledFor(level)

    def _log(self, outcome: Outcome) -> None:
        fields: dict[str, Any] = {
            "message_id": outcome.message_id,
            "event_id": outcome.event_id,
            "entity": outcome.entity,
            "key": outcome.subject,
            "outcome": outcome.status,
        }
        if outcome.lag_ms is not None:
            fields["lag_ms"] = round(outcome.lag_ms, 1)
        if outcome.status == "retry":
            self.logger.warning(outcome.reason, extra=fields)
        elif outcome.status == "dead-lettered":
            self.logger.error(outcome.reason, extra=fields)
        else:
            self.logger.info(outcome.status, extra=fields)

    def _metrics(self, outcomes: Sequence[Outcome]) -> None:
        by_entity: dict[str, list[Outcome]] = {}
        for outcome in outcomes:
            by_entity.setdefault(outcome.entity or "unknown", []).append(outcome)
        for entity, group in by_entity.items():
            metrics = EphemeralMetrics(namespace=NAMESPACE, service=self.service)
            metrics.add_dimension(name="entity", value=entity)
            for name, statuses in _COUNTS.items():
                value = sum(1 for o in group if o.status in statuses)
                metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
            lags = [o.lag_ms for o in group if o.lag_ms is not None]
            if lags:
                metrics.add_metric(
                    name="ReplicationLag",
                    unit=MetricUnit.Milliseconds,
                    value=sum(lags) / len(lags),
                )
                metrics.add_metric(
                    name="ReplicationLagMax", unit=MetricUnit.Milliseconds, value=max(lags)
                )
            metrics.flush_metrics()
