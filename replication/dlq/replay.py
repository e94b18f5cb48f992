"""Putting dead letters back on their source queue, and predicting what that would do.

A replay moves the selected messages to the queue they failed on, body
unchanged, with their original attributes (the dead-letter ones dropped, a
replay count added). FIFO messages keep their group and get a fresh
deduplication id: the source queue saw the original one, and SQS would drop
the replay as a duplicate within five minutes of it.

An unfiltered replay can instead start an SQS message move task (on AWS),
which moves messages server side; the emulator has none, and filtered
replays need to look at each message, so both move messages here.

The dry run rehearses each selected message against the consumer's mirrors
(one transaction each, rolled back) and reports what it would do now.
"""

from __future__ import annotations

__all__ = [
    "MoveTask",
    "Prediction",
    "predict",
    "replay_hand_over",
    "start_move_task",
    "watch_move_task",
]

import hashlib
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from replication.awsenv import aws_errors, error_code, http_status
from replication.consumer.core import Consumer
from replication.consumer.records import Delivery
from replication.dlq.messages import DeadLetter, Described, replay_attributes
from replication.dlq.move import HandOver
from replication.dlq.queues import Outgoing, Queues

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

Verdict = Literal["apply", "stale", "invalid", "retry"]

_VERDICTS: dict[str, Verdict] = {
    "applied": "apply",
    "deleted": "apply",
    "stale": "stale",
    "collapsed": "stale",
    "dead-lettered": "invalid",
    "retry": "retry",
}


@dataclass(frozen=True)
class Prediction:
    """What replaying one message would do now."""

    message_id: str
    verdict: Verdict
    detail: str

    @property
    def text(self) -> str:
        """One line for people."""
        return {
            "apply": "would apply",
            "stale": "would be stale",
            "invalid": "still invalid, would be dead-lettered again",
            "retry": "would fail and be retried",
        }[self.verdict] + (f": {self.detail}" if self.detail else "")


def _delivery(item: Described, region: str, account: str) -> Delivery:
    letter = item.letter
    attributes = {
        name: {
            "dataType": value["DataType"],
            **(
                {"stringValue": value["StringValue"]}
                if "StringValue" in value
                else {"binaryValue": value.get("BinaryValue")}
            ),
        }
        for name, value in replay_attributes(letter).items()
    }
    return Delivery(
        message_id=letter.message_id,
        receipt_handle="",
        body=letter.body,
        queue_arn=f"arn:aws:sqs:{region}:{account}:{item.source_queue}",
        receive_count=1,
        group_id=letter.group_id,
        attributes=attributes,
    )


def predict(
    consumer: Consumer,
    items: Sequence[Described],
    *,
    region: str = "us-east-1",
    account: str = "000000000000",
) -> list[Prediction]:
    """Rehearse each message alone against the mirrors as they are now; nothing changes."""
    predictions = []
    for item in items:
        [outcome] = consumer.process([_delivery(item, region, account)], rehearse=True)
        verdict = _VERDICTS[outcome.status]
        detail = outcome.reason
        if verdict == "apply":
            detail = "deletes the row" if outcome.status == "deleted" else ""
        elif verdict == "stale" and item.event is not None:
            detail = (
                f"the mirror already holds version {item.event.version} or newer of "
                f"{item.event.subject}"
            )
        predictions.append(Prediction(item.letter.message_id, verdict, detail))
    return predictions


def replay_hand_over(
    queues: Queues, source: str, *, fifo: bool, run: str | None = None
) -> HandOver:
    """Send messages to ``source`` as a replay (see the module docstring)."""
    run = run or uuid.uuid4().hex

    def hand_over(letters: Sequence[DeadLetter]) -> dict[str, str]:
        outgoing = []
        for letter in letters:
            group = dedup = None
            if fifo:
                group = letter.group_id or "replayed"
                dedup = hashlib.sha256(f"{run}:{letter.message_id}".encode()).hexdigest()[:64]
            outgoing.append(
                Outgoing(letter.message_id, letter.body, replay_attributes(letter), group, dedup)
            )
        return queues.send(source, outgoing)

    return hand_over


@dataclass(frozen=True)
class MoveTask:
    """An SQS message move task, watched until it ends."""

    handle: str
    source_arn: str


def start_move_task(
    sqs: SQSClient, source_arn: str, destination_arn: str, rate: float | None
) -> tuple[MoveTask | None, str]:
    """Start an SQS message move task; ``(None, why)`` where SQS has none (emulators)."""
    request: dict[str, Any] = {"SourceArn": source_arn, "DestinationArn": destination_arn}
    if rate is not None:
        request["MaxNumberOfMessagesPerSecond"] = max(1, min(500, int(rate)))
    try:
        response = sqs.start_message_move_task(**request)
    except Exception as exc:
        status = http_status(exc)
        code = error_code(exc)
        if code in _UNSUPPORTED or (status is not None and status >= 500):
            return None, f"this endpoint has no message move task ({code or status})"
        if code in ("AccessDenied", "AccessDeniedException"):
            return None, "not allowed to start a message move task (sqs:StartMessageMoveTask)"
        with aws_errors("starting a message move task"):
            raise
    return MoveTask(str(response["TaskHandle"]), source_arn), "started"


_UNSUPPORTED = {
    "InvalidAction",
    "UnsupportedOperation",
    "AWS.SimpleQueueService.UnsupportedOperation",
}


def watch_move_task(
    sqs: SQSClient,
    task: MoveTask,
    *,
    progress: Callable[[int, int | None], None],
    interval: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll the task until it is no longer running; returns its last state."""
    moved = 0
    while True:
        with aws_errors("reading the message move task"):
            results = sqs.list_message_move_tasks(SourceArn=task.source_arn, MaxResults=10)[
                "Results"
            ]
        state = next((r for r in results if r.get("TaskHandle") == task.handle), None)
        if state is None and results:
            state = results[0]
        if state is None:
            return {"Status": "UNKNOWN"}
        now = int(state.get("ApproximateNumberOfMessagesMoved", 0))
        total = state.get("ApproximateNumberOfMessagesToMove")
        progress(now - moved, int(total) if total is not None else None)
        moved = now
        if state.get("Status") != "RUNNING":
            return dict(state)
        sleep(interval)
