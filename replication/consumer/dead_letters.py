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
while they fit. Of the record's own, none named like ours is copied, nor any
other ``replication.*`` one but those a replay or a backfill sets
(``replication.replays``, ``replication.refresh``): a sender cannot plant what
on-call would read as the consumer's word.

A copy over 256 KiB, which a queue at SQS's former limit refuses, is cut to
that size when it can be: the record's own attributes that no consumer reads
go first (largest first), then the reason is shortened. One that cannot be cut
to 256 KiB keeps all it can within SQS's 1 MiB and is sent alone, for a DLQ
that takes that size (see :mod:`replication.sqs_send`). A copy the DLQ
refuses, or one over 1 MiB whatever is cut, is not dead-lettered: the record
stays in its queue until SQS redrive moves it to the DLQ, without the reason,
which the log and the failures table keep.
"""

from __future__ import annotations

__all__ = [
    "DEAD_LETTER_ATTRIBUTES",
    "FAILED_AT",
    "MESSAGE_ID",
    "REASON",
    "RECEIVE_COUNT",
    "REPLAYS",
    "SOURCE_QUEUE",
    "DeadLetters",
    "MemoryDeadLetters",
    "SqsDeadLetters",
    "dead_letter_message",
    "to_send_attributes",
]

import base64
import dataclasses
import datetime as dt
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from replication.consumer.records import REFRESH
from replication.sqs_send import (
    MAX_MESSAGE_BYTES,
    SAFE_MESSAGE_BYTES,
    Outgoing,
    attribute_size,
    oversize_problem,
    send_batches,
)

if TYPE_CHECKING:
    from replication.consumer.records import Delivery
    from replication.consumer.routes import Route

REASON = "replication.reason"
SOURCE_QUEUE = "replication.source-queue"
MESSAGE_ID = "replication.message-id"
RECEIVE_COUNT = "replication.receive-count"
FAILED_AT = "replication.failed-at"
DEAD_LETTER_ATTRIBUTES = (REASON, SOURCE_QUEUE, MESSAGE_ID, RECEIVE_COUNT, FAILED_AT)
"""The attributes the consumer gives a DLQ copy."""
REPLAYS = "replication.replays"
"""How many times a message was replayed from its DLQ (set by replay)."""
MAX_ATTRIBUTES = 10
MAX_REASON = 1000
MIN_REASON_BYTES = 64
"""A reason cut shorter than this no longer says why: the record is left to SQS redrive."""
_NAMESPACE = "replication."
_SENDERS_OWN = frozenset({REPLAYS, REFRESH})
"""The ``replication.*`` attributes a record may carry into its DLQ copy."""
_SHORTENED = "…"


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


def _copied(name: str) -> bool:
    """Whether a record's own attribute ``name`` goes into its DLQ copy."""
    if name in _SENDERS_OWN:
        return True
    # Case-blind: SQS names are case-sensitive, but a look-alike must not pass either.
    return not name.casefold().startswith(_NAMESPACE)


def dead_letter_attributes(delivery: Delivery, reason: str, now: dt.datetime) -> dict[str, Any]:
    """The attributes of the DLQ copy of ``delivery``, before any is dropped for size."""
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
        if len(attributes) < MAX_ATTRIBUTES and name not in attributes and _copied(name):
            attributes[name] = value
    return attributes


def dead_letter_message(
    delivery: Delivery, reason: str, now: dt.datetime, *, fifo: bool = False
) -> Outgoing:
    """The DLQ copy of ``delivery`` (keyed by its message id), cut to fit SQS if it must be.

    Cut to 256 KiB if it can be, else to 1 MiB (see :func:`_fitted`); a copy
    that fits neither is returned whole, for the caller to refuse.
    """
    whole = Outgoing(
        delivery.message_id,
        delivery.body,
        dead_letter_attributes(delivery, reason, now),
        (delivery.group_id or "dead-letters") if fifo else None,
        delivery.message_id[:128] if fifo else None,
    )
    for limit in (SAFE_MESSAGE_BYTES, MAX_MESSAGE_BYTES):
        fitted = _fitted(whole, limit)
        if fitted is not None:
            return fitted
    return whole


def _fitted(message: Outgoing, limit: int) -> Outgoing | None:
    """``message`` within ``limit`` bytes, losing as little as it can; None if it cannot be.

    The record's own attributes that no consumer reads go first, largest
    first; then the reason is shortened, to no less than ``MIN_REASON_BYTES``.
    """
    excess = message.size - limit
    if excess <= 0:
        return message
    kept = dict(message.attributes)
    droppable = [n for n in kept if n not in DEAD_LETTER_ATTRIBUTES and n not in _SENDERS_OWN]
    droppable.sort(key=lambda n: attribute_size(n, kept[n]), reverse=True)
    for name in droppable:
        if excess <= 0:
            break
        excess -= attribute_size(name, kept.pop(name))
    if excess > 0:
        text = str(kept[REASON]["StringValue"])
        room = len(text.encode()) - excess
        if room < MIN_REASON_BYTES:
            return None
        kept[REASON] = {"DataType": "String", "StringValue": _shorten(text, room)}
    return dataclasses.replace(message, attributes=kept)


def _shorten(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, marked as cut."""
    room = limit - len(_SHORTENED.encode())
    return text.encode()[:room].decode(errors="ignore") + _SHORTENED


_LEFT_TO_REDRIVE = (
    "the record stays in {queue} and SQS redrive moves it to the DLQ after maxReceiveCount "
    "receives, without a reason attribute"
)


def _unsendable(message: Outgoing, dlq: str, delivery: Delivery) -> str | None:
    """Why the DLQ copy cannot be sent at all, if it cannot."""
    if message.size <= MAX_MESSAGE_BYTES:
        return None
    return (
        f"DLQ {dlq}: {oversize_problem(message)}, even with the record's own attributes "
        "dropped and its reason shortened; " + _LEFT_TO_REDRIVE.format(queue=delivery.queue_name)
    )


def _refused(problem: str, message: Outgoing, dlq: str, delivery: Delivery) -> str:
    """A failed send, and what happens to the record when it failed for its size."""
    if message.size <= SAFE_MESSAGE_BYTES:
        return f"DLQ {dlq}: {problem}"
    # A DLQ that takes less than this copy will refuse it on every receive.
    return (
        f"DLQ {dlq}: {problem} (the copy is {message.size:,} bytes, over "
        f"{SAFE_MESSAGE_BYTES:,} even cut down: if the DLQ takes no more, "
        + _LEFT_TO_REDRIVE.format(queue=delivery.queue_name)
        + ")"
    )


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
            outgoing: dict[str, tuple[Outgoing, Delivery]] = {}
            for delivery, reason in entries:
                message = dead_letter_message(delivery, reason, now, fifo=fifo)
                problem = _unsendable(message, dlq, delivery)
                if problem is None:
                    outgoing[message.key] = (message, delivery)
                else:
                    problems[delivery.message_id] = problem
            messages = [message for message, _ in outgoing.values()]
            try:
                sent = send_batches(self._client(), url, messages)
            except Exception as exc:  # no client could be made: every copy stays unsent
                sent = {message.key: str(exc) for message in messages}
            for key, problem in sent.items():
                message, delivery = outgoing[key]
                problems[key] = _refused(problem, message, dlq, delivery)
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
            message = dead_letter_message(delivery, reason, now, fifo=route.dlq.endswith(".fifo"))
            problem = _unsendable(message, route.dlq, delivery)
            if problem is not None:
                problems[delivery.message_id] = problem
                continue
            self.messages.append(
                {"queue": route.dlq, "body": message.body, "attributes": message.attributes}
            )
        return problems
