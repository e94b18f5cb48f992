"""The SQS calls the DLQ commands make: read without consuming, send, delete, purge.

Reading a queue is receiving with a visibility timeout and then making the
messages visible again; nothing here deletes a message that was not handed
over first. SQS limits are enforced here (10 entries per batch call, 256 KiB
per send batch) because the local emulator does not enforce all of them.
"""

from __future__ import annotations

__all__ = ["Depth", "Outgoing", "QueueNotFoundError", "Queues", "Scan"]

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from replication.awsenv import aws_errors, error_code
from replication.dlq.messages import DeadLetter
from replication.errors import ConfigurationError

MAX_BATCH = 10
MAX_BATCH_BYTES = 256 * 1024
_NOT_FOUND = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}


class QueueNotFoundError(ConfigurationError):
    """A queue the topology names does not exist in the account."""


@dataclass(frozen=True)
class Depth:
    """Approximate message counts of a queue."""

    visible: int
    in_flight: int
    delayed: int

    @property
    def total(self) -> int:
        """Every message the queue holds."""
        return self.visible + self.in_flight + self.delayed


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
        """Bytes SQS counts against the batch limit (body, attribute names, types, values)."""
        size = len(self.body.encode())
        for name, value in self.attributes.items():
            size += len(name.encode()) + len(value["DataType"].encode())
            if "StringValue" in value:
                size += len(value["StringValue"].encode())
            if "BinaryValue" in value:
                size += len(value["BinaryValue"])
        return size


@dataclass(frozen=True)
class Scan:
    """The messages a read found, and whether it saw all the queue reported."""

    letters: tuple[DeadLetter, ...]
    depth: Depth

    @property
    def complete(self) -> bool:
        """Whether every visible message was read (FIFO groups hide all but their heads)."""
        return len(self.letters) >= self.depth.visible


class Queues:
    """SQS queues by name, through one boto3 client."""

    def __init__(self, sqs: Any) -> None:
        self.sqs = sqs
        self._urls: dict[str, str] = {}

    def url(self, name: str) -> str:
        """The queue's URL; QueueNotFoundError when it does not exist."""
        known = self._urls.get(name)
        if known is None:
            with aws_errors(f"looking up queue {name}"):
                try:
                    known = str(self.sqs.get_queue_url(QueueName=name)["QueueUrl"])
                except Exception as exc:
                    if error_code(exc) in _NOT_FOUND:
                        raise QueueNotFoundError(
                            f"queue {name} does not exist in this account and region: check "
                            "--prefix (or REPLICATION_PREFIX) and the region, or create the "
                            "topology with 'replication topology apply'"
                        ) from None
                    raise
            self._urls[name] = known
        return known

    def arn(self, name: str) -> str:
        """The queue's ARN."""
        with aws_errors(f"reading queue {name}"):
            attributes = self.sqs.get_queue_attributes(
                QueueUrl=self.url(name), AttributeNames=["QueueArn"]
            )["Attributes"]
        return str(attributes["QueueArn"])

    def depth(self, name: str) -> Depth:
        """Approximate visible, in-flight and delayed message counts."""
        with aws_errors(f"reading queue {name}"):
            attributes = self.sqs.get_queue_attributes(
                QueueUrl=self.url(name),
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                    "ApproximateNumberOfMessagesDelayed",
                ],
            )["Attributes"]
        return Depth(
            int(attributes.get("ApproximateNumberOfMessages", 0)),
            int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
            int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
        )

    def receive(
        self, name: str, *, count: int = MAX_BATCH, visibility: int = 60, wait: int = 0
    ) -> list[DeadLetter]:
        """Up to ``count`` messages, invisible to others for ``visibility`` seconds."""
        with aws_errors(f"receiving from queue {name}"):
            response = self.sqs.receive_message(
                QueueUrl=self.url(name),
                MaxNumberOfMessages=max(1, min(count, MAX_BATCH)),
                VisibilityTimeout=visibility,
                WaitTimeSeconds=wait,
                MessageAttributeNames=["All"],
                MessageSystemAttributeNames=["All"],
            )
        return [DeadLetter.from_sqs(name, m) for m in response.get("Messages", [])]

    def scan(self, name: str, *, limit: int | None = None, visibility: int = 60) -> Scan:
        """Read the queue's messages without consuming them (they are made visible again)."""
        depth = self.depth(name)
        found: dict[str, DeadLetter] = {}
        if depth.visible:
            idle = 0
            try:
                while idle < 2 and len(found) < depth.visible:
                    if limit is not None and len(found) >= limit:
                        break
                    batch = self.receive(name, visibility=visibility, wait=1 if idle else 0)
                    fresh = [m for m in batch if m.message_id not in found]
                    idle = 0 if fresh else idle + 1
                    for letter in batch:
                        found[letter.message_id] = letter
            finally:
                self.release(name, found.values())
        letters = tuple(found.values())
        return Scan(letters[:limit] if limit is not None else letters, depth)

    def release(self, name: str, letters: Iterable[DeadLetter]) -> None:
        """Make received messages visible again at once."""
        pending = [m for m in letters if m.receipt_handle]
        with aws_errors(f"releasing messages of queue {name}"):
            for start in range(0, len(pending), MAX_BATCH):
                chunk = pending[start : start + MAX_BATCH]
                self.sqs.change_message_visibility_batch(
                    QueueUrl=self.url(name),
                    Entries=[
                        {"Id": str(n), "ReceiptHandle": m.receipt_handle, "VisibilityTimeout": 0}
                        for n, m in enumerate(chunk)
                    ],
                )

    def delete(self, name: str, letters: Sequence[DeadLetter]) -> dict[str, str]:
        """Delete received messages; returns problems by message id."""
        problems: dict[str, str] = {}
        with aws_errors(f"deleting from queue {name}"):
            for start in range(0, len(letters), MAX_BATCH):
                chunk = letters[start : start + MAX_BATCH]
                try:
                    response = self.sqs.delete_message_batch(
                        QueueUrl=self.url(name),
                        Entries=[
                            {"Id": str(n), "ReceiptHandle": m.receipt_handle}
                            for n, m in enumerate(chunk)
                        ],
                    )
                except Exception as exc:
                    if error_code(exc) is None:
                        raise
                    problems.update({m.message_id: str(exc) for m in chunk})
                    continue
                for failed in response.get("Failed", []):
                    letter = chunk[int(failed["Id"])]
                    problems[letter.message_id] = f"{failed.get('Code')}: {failed.get('Message')}"
        return problems

    def send(self, name: str, messages: Sequence[Outgoing]) -> dict[str, str]:
        """Send ``messages`` in order; returns problems by key (the rest were sent)."""
        problems: dict[str, str] = {}
        with aws_errors(f"sending to queue {name}"):
            url = self.url(name)
            for chunk in _batches(messages):
                entries = []
                for n, message in enumerate(chunk):
                    entry: dict[str, Any] = {"Id": str(n), "MessageBody": message.body}
                    if message.attributes:
                        entry["MessageAttributes"] = message.attributes
                    if message.group_id is not None:
                        entry["MessageGroupId"] = message.group_id
                    if message.deduplication_id is not None:
                        entry["MessageDeduplicationId"] = message.deduplication_id
                    entries.append(entry)
                try:
                    response = self.sqs.send_message_batch(QueueUrl=url, Entries=entries)
                except Exception as exc:
                    if error_code(exc) is None:
                        raise
                    problems.update({m.key: str(exc) for m in chunk})
                    continue
                for failed in response.get("Failed", []):
                    message = chunk[int(failed["Id"])]
                    problems[message.key] = f"{failed.get('Code')}: {failed.get('Message')}"
        return problems

    def purge(self, name: str) -> None:
        """Delete every message of the queue (PurgeQueue)."""
        with aws_errors(f"purging queue {name}"):
            self.sqs.purge_queue(QueueUrl=self.url(name))


def _batches(messages: Sequence[Outgoing]) -> Iterable[list[Outgoing]]:
    """Runs of at most 10 messages and 256 KiB, in order."""
    chunk: list[Outgoing] = []
    size = 0
    for message in messages:
        if chunk and (len(chunk) == MAX_BATCH or size + message.size > MAX_BATCH_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(message)
        size += message.size
    if chunk:
        yield chunk
