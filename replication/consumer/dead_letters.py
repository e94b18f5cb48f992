"""Sending poison records to their queue's DLQ at once, with the reason attached.

The DLQ message is the record's body unchanged (so a replay to the source
queue is exactly the original delivery) with the record's message attributes
and these added, so on-call tooling can tell why it is there:

| attribute | value |
| --- | --- |
| ``replication.reason`` | why the record can never apply |
| ``replication.source-queue`` | the queue it was received from |
| ``replication.message-id`` | its SQS message id there |
| ``replication.receive-count`` | receives before it was dead-lettered |
| ``replication.failed-at`` | RFC 3339 UTC time |

SQS allows 10 attributes per message; ours come first, the record's own follow
while they fit.
"""

from __future__ import annotations

__all__ = [
    "FAILED_AT",
    "MESSAGE_ID",
    "REASON",
    "RECEIVE_COUNT",
    "SOURCE_QUEUE",
    "DeadLetters",
    "MemoryDeadLetters",
    "SqsDeadLetters",
    "to_send_attributes",
]

import base64
import datetime as dt
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from replication.consumer.core import Route
    from replication.consumer.records import Delivery

REASON = "replication.reason"
SOURCE_QUEUE = "replication.source-queue"
MESSAGE_ID = "replication.message-id"
RECEIVE_COUNT = "replication.receive-count"
FAILED_AT = "replication.failed-at"
MAX_ATTRIBUTES = 10
MAX_REASON = 1000


class DeadLetters(Protocol):
    """Where poison records go."""

    def send(self, poison: Sequence[tuple[Delivery, Route, str]]) -> dict[str, str]:
        """Dead-letter each ``(delivery, route, reason)``; returns problems by message id."""
        ...


def to_send_attributes(attributes: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Lambda-shaped message attributes (``stringValue``) as SendMessage takes them."""
    converted: dict[str, dict[str, Any]] = {}
    for name, value in attributes.items():
        data_type = value.get("dataType") or value.get("DataType") or "String"
        if value.get("stringValue") is not None:
            converted[name] = {"DataType": data_type, "StringValue": value["stringValue"]}
        elif value.get("binaryValue") is not None:
            binary = value["binaryValue"]
            if isinstance(binary, str):  # Lambda gives binary values base64-encoded
                binary = base64.b64decode(binary)
            converted[name] = {"DataType": data_type, "BinaryValue": binary}
        elif value.get("StringValue") is not None or value.get("BinaryValue") is not None:
            converted[name] = dict(value)
    return converted


def dead_letter_attributes(delivery: Delivery, reason: str, now: dt.datetime) -> dict[str, Any]:
    """The attributes of the DLQ copy of ``delivery``."""
    ours = {
        REASON: reason[:MAX_REASON],
        SOURCE_QUEUE: delivery.queue_name,
        MESSAGE_ID: delivery.message_id,
        RECEIVE_COUNT: str(delivery.receive_count),
        FAILED_AT: now.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
    }
    attributes: dict[str, Any] = {
        name: {"DataType": "String", "StringValue": value} for name, value in ours.items()
    }
    for name, value in to_send_attributes(delivery.attributes).items():
        if len(attributes) < MAX_ATTRIBUTES and name not in attributes:
            attributes[name] = value
    return attributes


class SqsDeadLetters:
    """Sends poison records to the DLQ of their queue, in the queue's account."""

    def __init__(self, sqs_client: Callable[[], Any]) -> None:
        self._client = sqs_client
        self._urls: dict[tuple[str, str], str] = {}

    def _url(self, name: str, account: str) -> str:
        known = self._urls.get((name, account))
        if known is None:
            kwargs = {"QueueName": name}
            if account:
                kwargs["QueueOwnerAWSAccountId"] = account
            known = self._client().get_queue_url(**kwargs)["QueueUrl"]
            self._urls[(name, account)] = known
        return known

    def send(self, poison: Sequence[tuple[Delivery, Route, str]]) -> dict[str, str]:
        """Dead-letter each ``(delivery, route, reason)``; returns problems by message id."""
        now = dt.datetime.now(dt.UTC)
        problems: dict[str, str] = {}
        by_dlq: dict[tuple[str, str], list[tuple[Delivery, str]]] = {}
        for delivery, route, reason in poison:
            by_dlq.setdefault((route.dlq, delivery.account), []).append((delivery, reason))
        for (dlq, account), entries in by_dlq.items():
            try:
                url = self._url(dlq, account)
            except Exception as exc:
                for delivery, _ in entries:
                    problems[delivery.message_id] = f"DLQ {dlq}: {exc}"
                continue
            fifo = dlq.endswith(".fifo")
            for start in range(0, len(entries), 10):
                chunk = entries[start : start + 10]
                batch = []
                for n, (delivery, reason) in enumerate(chunk):
                    entry: dict[str, Any] = {
                        "Id": str(n),
                        "MessageBody": delivery.body,
                        "MessageAttributes": dead_letter_attributes(delivery, reason, now),
                    }
                    if fifo:
                        entry["MessageGroupId"] = delivery.group_id or "dead-letters"
                        entry["MessageDeduplicationId"] = delivery.message_id[:128]
                    batch.append(entry)
                try:
                    response = self._client().send_message_batch(QueueUrl=url, Entries=batch)
                except Exception as exc:
                    for delivery, _ in chunk:
                        problems[delivery.message_id] = f"DLQ {dlq}: {exc}"
                    continue
                for failed in response.get("Failed", []):
                    delivery = chunk[int(failed["Id"])][0]
                    problems[delivery.message_id] = (
                        f"DLQ {dlq}: {failed.get('Code')}: {failed.get('Message', '')}"
                    )
        return problems


class MemoryDeadLetters:
    """Keeps dead letters in a list: for tests and local runs without SQS."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.refuse: set[str] = set()
        """Message ids whose send fails, to exercise the retry path."""

    def send(self, poison: Sequence[tuple[Delivery, Route, str]]) -> dict[str, str]:
        """Dead-letter each ``(delivery, route, reason)``; returns problems by message id."""
        now = dt.datetime.now(dt.UTC)
        problems: dict[str, str] = {}
        for delivery, route, reason in poison:
            if delivery.message_id in self.refuse:
                problems[delivery.message_id] = "refused"
                continue
            self.messages.append(
                {
                    "queue": route.dlq,
                    "body": delivery.body,
                    "attributes": dead_letter_attributes(delivery, reason, now),
                }
            )
        return problems
