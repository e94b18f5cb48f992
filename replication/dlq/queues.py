"""The SQS calls the DLQ commands make: read without consuming, send, delete, purge.

Reading a queue is receiving with a visibility timeout and then making the
messages visible again; nothing here deletes a message that was not handed
over first. SQS limits are enforced here (10 entries per batch call) because
the local emulator does not enforce all of them; sending goes through
:mod:`replication.sqs_send`, as the consumer's dead letters do.
"""

from __future__ import annotations

__all__ = ["MAX_BATCH", "Depth", "Outgoing", "QueueNotFoundError", "Queues", "Scan"]

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from replication.awsenv import aws_errors, error_code
from replication.dlq.messages import DeadLetter
from replication.errors import ConfigurationError
from replication.sqs_send import MAX_BATCH, Outgoing, send_batches

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

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

    def __init__(self, sqs: SQSClient) -> None:
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
        with aws_errors(f"sending to queue {name}"):
            return send_batches(
                self.sqs, self.url(name), messages, reported=lambda exc: error_code(exc) is not None
            )

    def purge(self, name: str) -> None:
        """Delete every message of the queue (PurgeQueue)."""
        with aws_errors(f"purging queue {name}"):
            self.sqs.purge_queue(QueueUrl=self.url(name))
