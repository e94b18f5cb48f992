"""The apply function: a consumer and its observer answering Lambda SQS events.

:class:`ApplyFunction` turns one Lambda SQS event into the consumer's outcomes
and a partial-batch response (``batchItemFailures``); the Lambda entry point
(:mod:`replication.consumer.handler`) and ``replication consume`` both call it.
"""

from __future__ import annotations

__all__ = ["KEEP_WARM", "ApplyFunction", "is_keep_warm"]

from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    SqsFifoPartialProcessor,
    process_partial_response,
)

from replication.consumer.core import Consumer
from replication.consumer.observe import Observer
from replication.consumer.outcomes import Outcome
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
