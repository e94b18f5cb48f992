"""The apply Lambda: ``replication.consumer.handler.lambda_handler``.

Configured by environment variables (the rendered template sets them):

- ``REPLICATION_MANIFEST``: the service's ``replication.yaml``; the contracts
  modules it names are imported from its ``python_path`` (its own folder by
  default), ``REPLICATION_CONTRACTS`` overriding them;
- ``REPLICATION_PREFIX``: the environment prefix of queue and topic names;
- ``<SERVICE>_DATABASE_SECRET_ARN`` (or the URL variable the manifest names),
  ``REPLICATION_DATABASE_IAM_AUTH``: see :mod:`replication.consumer.database`;
- ``REPLICATION_STATEMENTS``, ``REPLICATION_APPLY_BULK``, ``REPLICATION_LOG_LEVEL``,
  ``REPLICATION_PAYLOAD_BUCKET``, ``REPLICATION_PAYLOAD_MAX_BYTES``:
  see :class:`~replication.consumer.wiring.ConsumerSettings`.

Importing this module imports neither boto3 nor SQLAlchemy and opens no
connection: the consumer is built on the first invocation and reused while
the environment stays warm. A keep-warm ping (``{"replication": "keep-warm"}``)
is answered at once, without touching the database.
"""

from __future__ import annotations

__all__ = ["ApplyFunction", "is_keep_warm", "lambda_handler"]

from pathlib import Path
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    SqsFifoPartialProcessor,
    process_partial_response,
)

from replication.consumer.core import Consumer, Outcome
from replication.consumer.observe import Observer
from replication.consumer.records import parse_delivery

KEEP_WARM = {"replication": "keep-warm"}


class RetryLaterError(Exception):
    """The record is left in its queue for SQS to deliver again."""


def is_keep_warm(event: Any) -> bool:
    """Whether ``event`` is the keep-warm schedule's ping."""
    return isinstance(event, dict) and event.get("replication") == "keep-warm"


class ApplyFunction:
    """A consumer and its observer, answering Lambda SQS events with a partial-batch response."""

    def __init__(self, consumer: Consumer, observer: Observer) -> None:
        self.consumer = consumer
        self.observer = observer

    def __call__(self, event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        """Handle one Lambda invocation."""
        if is_keep_warm(event):
            return {"warm": True}
        records = event.get("Records") if isinstance(event, dict) else None
        if not isinstance(records, list) or not records:
            raise ValueError("not an SQS event: no Records")
        deliveries = [parse_delivery(record) for record in records]
        outcomes = self.consumer.process(deliveries)
        self.observer.batch(outcomes)
        by_id: dict[str, Outcome] = {o.message_id: o for o in outcomes}
        processor: BatchProcessor
        if any(d.queue_name.endswith(".fifo") for d in deliveries):
            # Stops a message group at its first failure and fails the rest of the group,
            # so a later record of that group is not applied before an earlier one.
            processor = SqsFifoPartialProcessor(skip_group_on_error=True)
        else:
            processor = BatchProcessor(event_type=EventType.SQS)
        # Every record failing is still a partial response: SQS retries each one.
        processor.raise_on_entire_batch_failure = False

        def record_handler(record: Any) -> str:
            outcome = by_id[record.message_id]
            if not outcome.done:
                raise RetryLaterError(outcome.reason)
            return outcome.status

        response: dict[str, Any] = dict(
            process_partial_response(
                event=event, record_handler=record_handler, processor=processor, context=context
            )
        )
        return response


_function: ApplyFunction | None = None


def _build_from_environment() -> ApplyFunction:
    from replication.consumer.wiring import ConsumerSettings, build_consumer
    from replication.contract_modules import manifest_path
    from replication.manifest import load_manifest

    manifest = load_manifest(Path(manifest_path()))
    settings = ConsumerSettings.from_environment()
    consumer = build_consumer(manifest, settings)
    return ApplyFunction(consumer, Observer(manifest.service, level=settings.log_level))


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda entry point."""
    global _function
    if is_keep_warm(event):
        return {"warm": True}
    if _function is None:  # built on the first invocation, reused while warm
        _function = _build_from_environment()
    return _function(event, context)
