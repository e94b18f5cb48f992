"""Snapshots sent straight to one consumer's queue, so other consumers are not disturbed.

A backfill or a repair sends each event as the raw change event (no SNS
envelope), marked with the ``replication.refresh`` attribute: the consumer
applies it like any event (the version guard keeps newer rows and tombstones)
and also rewrites a row held at exactly its version. Events larger than SQS
accepts go to S3 as the relay's do (the extended clients' pointer), when a
payload bucket is configured.
"""

from __future__ import annotations

__all__ = ["ConsumerQueue", "SendError"]

from collections.abc import Sequence
from typing import Any

from replication.consumer.records import REFRESH
from replication.dlq.queues import Outgoing, Queues
from replication.errors import TransientError
from replication.events import ChangeEvent, encode_event
from replication.payloads import EXTENDED_SIZE_ATTRIBUTE, SNS_MAX_BYTES, PayloadStore

_ATTEMPTS = 3


class SendError(TransientError):
    """SQS did not take some messages after retries; nothing after them was sent."""


class ConsumerQueue:
    """One consumer's SQS queue of one mirrored entity."""

    def __init__(
        self,
        queues: Queues,
        name: str,
        *,
        fifo: bool = False,
        payloads: PayloadStore | None = None,
    ) -> None:
        self._queues = queues
        self.name = name
        self.fifo = fifo
        self._payloads = payloads

    @property
    def url(self) -> str:
        """The queue's URL (QueueNotFoundError when it does not exist)."""
        return self._queues.url(self.name)

    def send(self, events: Sequence[ChangeEvent], *, refresh: bool = True) -> int:
        """Send ``events`` in order (batches of at most ten and 256 KiB); returns the count.

        Messages SQS did not take are sent again, twice at most; then SendError.
        """
        pending = [self._message(str(n), event, refresh) for n, event in enumerate(events)]
        problems: dict[str, str] = {}
        for _ in range(_ATTEMPTS):
            problems = self._queues.send(self.name, pending)
            if not problems:
                return len(events)
            pending = [m for m in pending if m.key in problems]
        raise SendError(
            f"SQS did not take {len(problems)} message(s) for {self.name}: "
            + "; ".join(sorted(set(problems.values())))
        )

    def _message(self, key: str, event: ChangeEvent, refresh: bool) -> Outgoing:
        body = encode_event(event).decode()
        attributes: dict[str, dict[str, Any]] = {}
        if refresh:
            attributes[REFRESH] = {"DataType": "String", "StringValue": "true"}
        size = len(body.encode())
        if size > SNS_MAX_BYTES - 4096:  # room for the attributes within SQS's 256 KiB
            if self._payloads is None:
                raise SendError(
                    f"{event!r} is {size} bytes, more than SQS takes; configure a payload "
                    "bucket (REPLICATION_PAYLOAD_BUCKET) to send it through S3"
                )
            body = self._payloads.offload(str(event.id), body)
            attributes[EXTENDED_SIZE_ATTRIBUTE] = {"DataType": "Number", "StringValue": str(size)}
        if not self.fifo:
            return Outgoing(key, body, attributes)
        return Outgoing(key, body, attributes, event.subject, f"{event.id.hex}-refresh")
