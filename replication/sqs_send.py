"""Sending messages to an SQS queue within SQS's limits: the one path the consumer and tools use.

SQS takes one message of at most 1 MiB (a queue's ``MaximumMessageSize`` may
be lower: 256 KiB was SQS's maximum until 2025, and a queue may still be set
to it) and ``SendMessageBatch`` calls of at most 10 entries; it measures a
message as the UTF-8 bytes of its body plus, for each message attribute, the
bytes of its name, its data type and its value. Batches here hold at most
256 KiB in all, which every SQS endpoint takes (the former limit of a whole
call); a message over 256 KiB goes alone in its call, so only that message
meets a queue that is set lower. A message over 1 MiB is never sent. The local
emulator does not enforce all of this, so it is enforced here.

Planning the batches is pure; sending is a thin loop over a client passed in.
Nothing beyond the standard library is imported, so the apply Lambda's cold
start does not grow.
"""

from __future__ import annotations

__all__ = [
    "MAX_BATCH",
    "MAX_BATCH_BYTES",
    "MAX_MESSAGE_BYTES",
    "SAFE_MESSAGE_BYTES",
    "Outgoing",
    "Plan",
    "attribute_size",
    "message_size",
    "oversize_problem",
    "plan_batches",
    "send_batches",
]

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

MAX_BATCH = 10
"""Entries of one SendMessageBatch call."""
SAFE_MESSAGE_BYTES = 256 * 1024
"""A message every queue takes at its default settings, old or new."""
MAX_BATCH_BYTES = SAFE_MESSAGE_BYTES
"""Bytes of one SendMessageBatch call holding more than one message."""
MAX_MESSAGE_BYTES = 1024 * 1024
"""Bytes of one message at most (a queue may be set to take fewer)."""


def attribute_size(name: str, value: Mapping[str, Any]) -> int:
    """Bytes SQS counts for one message attribute: its name, data type and value."""
    size = len(name.encode()) + len(str(value.get("DataType", "")).encode())
    if value.get("StringValue") is not None:
        size += len(str(value["StringValue"]).encode())
    if value.get("BinaryValue") is not None:
        size += len(value["BinaryValue"])
    return size


def message_size(body: str, attributes: Mapping[str, Mapping[str, Any]]) -> int:
    """Bytes SQS counts for a message: its body and every attribute."""
    return len(body.encode()) + sum(attribute_size(n, v) for n, v in attributes.items())


@dataclass(frozen=True)
class Outgoing:
    """A message to send: ``key`` names it in the returned problems."""

    key: str
    body: str
    attributes: dict[str, dict[str, Any]]
    group_id: str | None = None
    deduplication_id: str | None = None

    @property
    def size(self) -> int:
        """Bytes SQS counts against its limits (body, attribute names, types, values)."""
        return message_size(self.body, self.attributes)


@dataclass(frozen=True)
class Plan:
    """How messages go out: batches in the given order, and the ones SQS cannot take."""

    batches: tuple[tuple[Outgoing, ...], ...]
    oversize: tuple[Outgoing, ...]


def plan_batches(messages: Iterable[Outgoing]) -> Plan:
    """Runs of at most 10 messages and 256 KiB, in order.

    A message over 256 KiB is a batch of its own; one over 1 MiB is in none.
    """
    batches: list[tuple[Outgoing, ...]] = []
    oversize: list[Outgoing] = []
    batch: list[Outgoing] = []
    size = 0
    for message in messages:
        measured = message.size
        if measured > MAX_MESSAGE_BYTES:
            oversize.append(message)
            continue
        # A message over 256 KiB closes the batch before it, and the one it is alone in.
        if batch and (len(batch) == MAX_BATCH or size + measured > MAX_BATCH_BYTES):
            batches.append(tuple(batch))
            batch, size = [], 0
        batch.append(message)
        size += measured
    if batch:
        batches.append(tuple(batch))
    return Plan(tuple(batches), tuple(oversize))


def oversize_problem(message: Outgoing) -> str:
    """Why SQS cannot take ``message``."""
    return (
        f"the message is {message.size:,} bytes with its attributes, over SQS's "
        f"{MAX_MESSAGE_BYTES:,} for one message"
    )


def _everything(exc: Exception) -> bool:
    return True


def send_batches(
    sqs: SQSClient,
    url: str,
    messages: Sequence[Outgoing],
    *,
    reported: Callable[[Exception], bool] = _everything,
) -> dict[str, str]:
    """Send ``messages`` to the queue at ``url`` in order; returns problems by key.

    The messages without a problem were sent. A call that raises an exception
    ``reported`` accepts makes a problem of each message of its batch; any
    other exception propagates.
    """
    plan = plan_batches(messages)
    problems = {message.key: oversize_problem(message) for message in plan.oversize}
    for batch in plan.batches:
        entries = []
        for n, message in enumerate(batch):
            entry: SendMessageBatchRequestEntryTypeDef = {"Id": str(n), "MessageBody": message.body}
            if message.attributes:
                # Attribute values as SQS returned or the caller built them: checked by SQS.
                entry["MessageAttributes"] = cast(Any, message.attributes)
            if message.group_id is not None:
                entry["MessageGroupId"] = message.group_id
            if message.deduplication_id is not None:
                entry["MessageDeduplicationId"] = message.deduplication_id
            entries.append(entry)
        try:
            response = sqs.send_message_batch(QueueUrl=url, Entries=entries)
        except Exception as exc:
            if not reported(exc):
                raise
            problems.update({message.key: str(exc) for message in batch})
            continue
        for failed in response.get("Failed", []):
            message = batch[int(failed["Id"])]
            problems[message.key] = f"{failed.get('Code')}: {failed.get('Message', '')}"
    return problems
