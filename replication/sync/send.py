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
from replication.errors import TransientError
from replication.events import ChangeEvent, encode_event
from replication.payloads import EXTENDED_SIZE_ATTRIBUTE, SNS_MAX_BYTES, PayloadStore

MAX_BATCH = 10
MAX_BATCH_BYTES = 256 * 1024
"""SQS's limit for a whole SendMessageBatch (bodies and attributes)."""
_ATTEMPTS = 3


class SendError(TransientError):
    """SQS did not take some messages after retries; nothing after them was sent."""


class ConsumerQueue:
    """One consumer's SQS queue of one mirrored entity."""

    def __init__(
        self,
        sqs: Any,
        url: str,
        *,
        fifo: bool = False,
        payloads: PayloadStore | None = None,
    ) -> None:
        self._sqs = sqs
        self.url = url
        self.fifo = fifo
        self._payloads = payloads

    def send(self, events: Sequence[ChangeEvent], *, refresh: bool = True) -> int:
        """Send ``events`` in order (batches of at most ten and 256 KiB); returns the count."""
        batch: list[dict[str, Any]] = []
        size = 0
        for event in events:
            entry = self._entry(len(batch), event, refresh)
            entry_size = _size(entry)
            if batch and (len(batch) == MAX_BATCH or size + entry_size > MAX_BATCH_BYTES):
                self._send_batch(batch)
                batch, size = [], 0
                entry["Id"] = "0"
            batch.append(entry)
            size += entry_size
        if batch:
            self._send_batch(batch)
        return len(events)

    def _entry(self, n: int, event: ChangeEvent, refresh: bool) -> dict[str, Any]:
        body = encode_event(event).decode()
        attributes: dict[str, dict[str, str]] = {}
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
        entry: dict[str, Any] = {"Id": str(n), "MessageBody": body, "MessageAttributes": attributes}
        if self.fifo:
            entry["MessageGroupId"] = event.subject
            entry["MessageDeduplicationId"] = f"{event.id.hex}-refresh"
        return entry

    def _send_batch(self, entries: list[dict[str, Any]]) -> None:
        pending = entries
        for _ in range(_ATTEMPTS):
            response = self._sqs.send_message_batch(QueueUrl=self.url, Entries=pending)
            failed = {f["Id"]: f for f in response.get("Failed", [])}
            if not failed:
                return
            sender_faults = [f for f in failed.values() if f.get("SenderFault")]
            if sender_faults:
                raise SendError(
                    f"SQS refused {len(sender_faults)} message(s) for {self.url}: "
                    + "; ".join(f"{f.get('Code')}: {f.get('Message')}" for f in sender_faults)
                )
            pending = [e for e in pending if e["Id"] in failed]
        raise SendError(f"SQS did not take {len(pending)} message(s) for {self.url} after retries")


def _size(entry: dict[str, Any]) -> int:
    """What SQS counts of an entry: the body, and each attribute's name, type and value."""
    size = len(entry["MessageBody"].encode())
    for name, value in entry["MessageAttributes"].items():
        size += len(name.encode()) + len(value["DataType"].encode())
        size += len(value["StringValue"].encode())
    return size
