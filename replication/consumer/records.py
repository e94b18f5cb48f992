"""SQS records as Lambda delivers them, unwrapped to the change event they carry.

A record's body is either the change event itself (raw message delivery, or a
backfill sent straight to the queue) or an SNS notification envelope whose
``Message`` is the event. Either may be an S3 pointer (claim check) instead of
the event. Pure: no AWS call, no database.
"""

from __future__ import annotations

__all__ = ["REFRESH", "Delivery", "Envelope", "parse_delivery", "unwrap_body"]

from dataclasses import dataclass
from typing import Any

from replication.errors import InvalidEventError
from replication.wire import StrictJSONError, loads_strict

REFRESH = "replication.refresh"
"""Message attribute (``"true"``) of snapshots sent straight to a consumer's queue by a
backfill or a repair: a row already at the snapshot's version is rewritten."""
_ENVELOPE_REQUIRED = ("Type", "MessageId", "TopicArn", "Message", "Timestamp")
_ENVELOPE_KEYS = ("Type", "TopicArn", "Message")
"""Keys of an SNS envelope that no change event has: a body with one is an envelope."""
_ENVELOPE_NEEDLES = tuple(f'"{k}"' for k in _ENVELOPE_KEYS)


@dataclass(frozen=True)
class Delivery:
    """One SQS record: where it came from and how often it was received."""

    message_id: str
    receipt_handle: str
    body: str
    queue_arn: str
    receive_count: int
    group_id: str | None
    attributes: dict[str, Any]
    """The record's message attributes, in Lambda's shape (``stringValue``, ``dataType``)."""

    @property
    def refresh(self) -> bool:
        """Whether the sender (a backfill or a repair) asks for a refresh at equal version."""
        value = self.attributes.get(REFRESH)
        return isinstance(value, dict) and value.get("stringValue") == "true"

    @property
    def queue_name(self) -> str:
        """The name of the queue the record was received from."""
        return self.queue_arn.rsplit(":", 1)[-1]

    @property
    def account(self) -> str:
        """The account that owns the queue."""
        parts = self.queue_arn.split(":")
        return parts[4] if len(parts) == 6 else ""


@dataclass(frozen=True)
class Envelope:
    """What a body carries: the message and, through SNS, the topic it was published on."""

    message: str
    topic_arn: str | None


def parse_delivery(record: Any) -> Delivery:
    """A Lambda SQS record as a :class:`Delivery`; ValueError if it is not one."""
    if not isinstance(record, dict):
        raise ValueError(f"an SQS record must be a JSON object, got {type(record).__name__}")
    message_id = record.get("messageId")
    body = record.get("body")
    source = record.get("eventSourceARN")
    if not isinstance(message_id, str) or not message_id:
        raise ValueError("SQS record without a messageId")
    if not isinstance(body, str):
        raise ValueError(f"SQS record {message_id} has no body")
    if not isinstance(source, str) or not source.startswith("arn:"):
        raise ValueError(f"SQS record {message_id} has no eventSourceARN")
    attributes = record.get("attributes") or {}
    try:
        receive_count = int(attributes.get("ApproximateReceiveCount", "1"))
    except (TypeError, ValueError):
        receive_count = 1
    return Delivery(
        message_id=message_id,
        receipt_handle=str(record.get("receiptHandle", "")),
        body=body,
        queue_arn=source,
        receive_count=receive_count,
        group_id=attributes.get("MessageGroupId"),
        attributes=dict(record.get("messageAttributes") or {}),
    )


def unwrap_body(body: str) -> Envelope:
    """The message a record body carries; InvalidEventError for a broken SNS envelope."""
    opens = body.startswith("{") or body.lstrip().startswith("{")  # lstrip copies: if needed
    if not opens or not any(needle in body for needle in _ENVELOPE_NEEDLES):
        return Envelope(body, None)
    try:
        # Strict, as the event decoder reads: an envelope repeating TopicArn or Message
        # would be read differently by readers keeping the first or the last value.
        document = loads_strict(body)
    except StrictJSONError:
        # Not JSON (that every reader reads alike): the event decoder names the problem.
        return Envelope(body, None)
    if (
        not isinstance(document, dict)
        or "specversion" in document
        or not any(k in document for k in _ENVELOPE_KEYS)
    ):
        return Envelope(body, None)
    kind = document.get("Type", "Notification")
    if kind != "Notification":
        raise InvalidEventError(
            f"an SNS message of Type {str(kind)[:40]!r}, not a Notification carrying a change event"
        )
    missing = [name for name in _ENVELOPE_REQUIRED if name not in document]
    if missing:
        raise InvalidEventError(f"SNS envelope without {', '.join(missing)}")
    message, topic = document["Message"], document["TopicArn"]
    if not isinstance(message, str) or not isinstance(topic, str):
        raise InvalidEventError("SNS envelope whose Message or TopicArn is not a string")
    return Envelope(message, topic)
