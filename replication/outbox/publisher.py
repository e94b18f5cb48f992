"""Publishing messages to a topic: the port, the SNS adapter and an in-memory one.

The relay speaks only to :class:`Publisher`. :class:`SnsPublisher` calls SNS
``PublishBatch``; :class:`InMemoryPublisher` keeps messages in lists, for
tests and local work, and passes the same test suite.
"""

from __future__ import annotations

__all__ = [
    "MAX_BATCH_ENTRIES",
    "InMemoryPublisher",
    "OutgoingMessage",
    "PublishError",
    "PublishResult",
    "Publisher",
    "SnsPublisher",
]

import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from replication.awsenv import error_code, http_status
from replication.errors import TransientError

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sns.type_defs import (
        MessageAttributeValueTypeDef,
        PublishBatchRequestEntryTypeDef,
    )

MAX_BATCH_ENTRIES = 10
"""SNS PublishBatch takes at most 10 entries."""

_THROTTLING = frozenset(
    {
        "Throttling",
        "Throttled",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "KMSThrottling",
        "KMSThrottlingException",
    }
)


@dataclass(frozen=True)
class OutgoingMessage:
    """One message to publish; ``id`` is unique within a batch."""

    id: str
    body: str
    attributes: dict[str, str]
    group_id: str | None = None
    deduplication_id: str | None = None
    number_attributes: dict[str, int] = field(default_factory=dict)

    def size(self) -> int:
        """Bytes SNS counts for this message: body plus attribute names, types and values."""
        total = len(self.body.encode())
        for name, value in self.attributes.items():
            total += len(name.encode()) + len(b"String") + len(value.encode())
        for name, number in self.number_attributes.items():
            total += len(name.encode()) + len(b"Number") + len(str(number))
        return total


@dataclass(frozen=True)
class PublishResult:
    """What one batch publish did: ids that failed, with a reason each."""

    failed: dict[str, str] = field(default_factory=dict)


class PublishError(TransientError):
    """A whole publish call failed; ``throttled`` when the service asked to slow down."""

    def __init__(self, message: str, *, throttled: bool = False) -> None:
        super().__init__(message)
        self.throttled = throttled


class Publisher(ABC):
    """Publishes batches of messages to topics."""

    @abstractmethod
    def publish_batch(self, topic_arn: str, messages: Sequence[OutgoingMessage]) -> PublishResult:
        """Publish up to 10 messages; entries that failed are in the result, not raised."""


class SnsPublisher(Publisher):
    """Publishes with SNS ``PublishBatch``."""

    def __init__(self, sns_client: SNSClient) -> None:
        self._sns = sns_client

    def publish_batch(self, topic_arn: str, messages: Sequence[OutgoingMessage]) -> PublishResult:
        """Publish up to 10 messages with one PublishBatch call."""
        if not messages:
            return PublishResult()
        if len(messages) > MAX_BATCH_ENTRIES:
            raise ValueError(f"PublishBatch takes at most {MAX_BATCH_ENTRIES} entries")
        entries = [_entry(m) for m in messages]
        try:
            response = self._sns.publish_batch(
                TopicArn=topic_arn, PublishBatchRequestEntries=entries
            )
        except Exception as exc:
            code = error_code(exc)
            if code is None:
                raise PublishError(f"publish to {topic_arn} failed: {exc}") from exc
            throttled = code in _THROTTLING or http_status(exc) == 429
            raise PublishError(
                f"publish to {topic_arn} failed: {code}: {exc}", throttled=throttled
            ) from exc
        failed = {
            f["Id"]: f"{f.get('Code', 'Failed')}: {f.get('Message', '')}".strip()
            for f in response.get("Failed", [])
        }
        # An entry SNS names in neither list was not confirmed: retry it.
        confirmed = {s["Id"] for s in response.get("Successful", [])}
        for message in messages:
            if message.id not in confirmed and message.id not in failed:
                failed[message.id] = "Unconfirmed: not reported as published"
        return PublishResult(failed=failed)


def _entry(message: OutgoingMessage) -> PublishBatchRequestEntryTypeDef:
    attributes: dict[str, MessageAttributeValueTypeDef] = {
        name: {"DataType": "String", "StringValue": value}
        for name, value in message.attributes.items()
    }
    for name, number in message.number_attributes.items():
        attributes[name] = {"DataType": "Number", "StringValue": str(number)}
    entry: PublishBatchRequestEntryTypeDef = {
        "Id": message.id,
        "Message": message.body,
        "MessageAttributes": attributes,
    }
    if message.group_id is not None:
        entry["MessageGroupId"] = message.group_id
    if message.deduplication_id is not None:
        entry["MessageDeduplicationId"] = message.deduplication_id
    return entry


@dataclass
class PublishedMessage:
    """A message an InMemoryPublisher accepted."""

    topic_arn: str
    message: OutgoingMessage


class InMemoryPublisher(Publisher):
    """Keeps published messages in memory; ids in ``fail_ids`` fail, for fault injection."""

    def __init__(self) -> None:
        self.published: list[PublishedMessage] = []
        self.fail_ids: set[str] = set()
        self.throttle_calls = 0
        self._lock = threading.Lock()

    def publish_batch(self, topic_arn: str, messages: Sequence[OutgoingMessage]) -> PublishResult:
        """Record the messages; fail the ones asked for; throttle while asked to."""
        if len(messages) > MAX_BATCH_ENTRIES:
            raise ValueError(f"PublishBatch takes at most {MAX_BATCH_ENTRIES} entries")
        if len({m.id for m in messages}) != len(messages):
            raise ValueError("batch entry ids must be distinct")
        with self._lock:
            if self.throttle_calls > 0:
                self.throttle_calls -= 1
                raise PublishError("Throttling: rate exceeded", throttled=True)
            failed = {}
            for message in messages:
                if message.id in self.fail_ids:
                    failed[message.id] = "InternalError: injected failure"
                else:
                    self.published.append(PublishedMessage(topic_arn, message))
            return PublishResult(failed=failed)
