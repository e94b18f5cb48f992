"""The local event source: ``replication consume``, SQS to the apply handler without Lambda.

It reproduces what the Lambda SQS event source mapping does, so the same
handler runs on a laptop, on ECS/EC2, or in tests:

- long-polls each of the service's queues (one thread per queue) and gathers
  up to ``batch_size`` messages, waiting at most ``batching_window`` seconds
  for a batch to fill (FIFO: at most 10, no window);
- passes them to the handler as a Lambda SQS event (same record shape, with
  ``ApproximateReceiveCount``, message group ids and message attributes);
- deletes the records the handler reports done and leaves the rest, whose
  visibility timeout then expires so SQS delivers them again and counts the
  receive (and moves them to the DLQ after ``maxReceiveCount``);
- an exception from the handler or a malformed response fails the whole batch.

Handler calls are serialised (the consumer holds one database connection).
SIGTERM/SIGINT finish the batch in hand, then stop. What the runner does is
logged as JSON lines, or said in sentences on a terminal (:mod:`replication.logs`).
"""

from __future__ import annotations

__all__ = ["EventSourceRunner", "QueueSource", "RunnerSettings", "RunnerStats", "to_lambda_record"]

import base64
import contextlib
import signal
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, TextIO

from replication.logs import ProcessLog

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


@dataclass(frozen=True)
class RunnerSettings:
    """The event source mapping's knobs."""

    batch_size: int = 10
    batching_window: float = 0.0
    """Seconds to wait for a batch to fill (0-300), as ``MaximumBatchingWindowInSeconds``."""
    visibility_timeout: int | None = None
    """Seconds a received batch stays invisible; None: the queue's own setting."""
    wait_time: int = 10
    """Long-poll seconds per ReceiveMessage (at most 20)."""
    function_timeout: float = 60.0
    """What the handler's context reports as its time budget."""

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= 10_000:
            raise ValueError("batch size must be between 1 and 10,000")
        if not 0 <= self.batching_window <= 300:
            raise ValueError("batching window must be between 0 and 300 seconds")
        if not 0 <= self.wait_time <= 20:
            raise ValueError("wait time must be between 0 and 20 seconds")


@dataclass(frozen=True)
class QueueSource:
    """A queue the runner polls."""

    name: str
    url: str
    arn: str
    region: str

    @property
    def fifo(self) -> bool:
        """Whether the queue is FIFO."""
        return self.name.endswith(".fifo")


@dataclass
class RunnerStats:
    """What the runner did so far."""

    batches: int = 0
    received: int = 0
    deleted: int = 0
    retried: int = 0
    failed_batches: int = 0

    def line(self) -> str:
        """A one-line summary."""
        return (
            f"{self.received} received, {self.deleted} done, {self.retried} left for retry, "
            f"{self.batches} batches ({self.failed_batches} failed whole)"
        )

    def fields(self) -> dict[str, int]:
        """The counts, as log fields."""
        return asdict(self)


class _Context:
    """The parts of the Lambda context handlers use."""

    def __init__(self, function_name: str, timeout: float) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:local:000000000000:function:{function_name}"
        self.memory_limit_in_mb = 0
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/local/{function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def to_lambda_record(message: Mapping[str, Any], source: QueueSource) -> dict[str, Any]:
    """An SQS ReceiveMessage message as Lambda's event source mapping passes it."""
    attributes = {}
    for name, value in (message.get("MessageAttributes") or {}).items():
        binary = value.get("BinaryValue")
        converted: dict[str, Any] = {
            "stringListValues": value.get("StringListValues", []),
            "binaryListValues": value.get("BinaryListValues", []),
            "dataType": value.get("DataType", "String"),
        }
        if value.get("StringValue") is not None:
            converted["stringValue"] = value["StringValue"]
        if binary is not None:
            converted["binaryValue"] = base64.b64encode(binary).decode()
        attributes[name] = converted
    record = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes") or {}),
        "messageAttributes": attributes,
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": source.arn,
        "awsRegion": source.region,
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


class EventSourceRunner:
    """Drives a Lambda SQS handler from real queues."""

    def __init__(
        self,
        handler: Handler,
        sqs_client: SQSClient,
        queues: Sequence[QueueSource],
        settings: RunnerSettings | None = None,
        *,
        function_name: str = "apply",
        out: TextIO | None = None,
        log: ProcessLog | None = None,
    ) -> None:
        self.handler = handler
        self.sqs = sqs_client
        self.queues = list(queues)
        self.settings = settings or RunnerSettings()
        self.function_name = function_name
        self.log = log or ProcessLog(out=out)
        """What the runner says: JSON log lines, sentences to ``out``, or (neither) nothing."""
        self.stats = RunnerStats()
        self._lock = threading.Lock()

    @classmethod
    def for_queue_names(
        cls,
        handler: Handler,
        sqs_client: SQSClient,
        names: Sequence[str],
        settings: RunnerSettings | None = None,
        **kwargs: Any,
    ) -> EventSourceRunner:
        """A runner for queues given by name (resolved to URL and ARN once)."""
        region = sqs_client.meta.region_name
        sources = []
        for name in names:
            url = sqs_client.get_queue_url(QueueName=name)["QueueUrl"]
            arn = sqs_client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
                "Attributes"
            ]["QueueArn"]
            sources.append(QueueSource(name, url, arn, region))
        return cls(handler, sqs_client, sources, settings, **kwargs)

    # -- one batch ---------------------------------------------------------------------

    def _receive(self, source: QueueSource, wait: int) -> list[Mapping[str, Any]]:
        """Up to a batch of messages, gathered within the batching window."""
        limit = min(self.settings.batch_size, 10) if source.fifo else self.settings.batch_size
        window = 0.0 if source.fifo else self.settings.batching_window
        messages: list[Mapping[str, Any]] = []
        deadline = 0.0
        wait_now = wait
        while len(messages) < limit:
            requested = min(10, limit - len(messages))
            kwargs: dict[str, Any] = {
                "QueueUrl": source.url,
                "MaxNumberOfMessages": requested,
                "WaitTimeSeconds": wait_now,
                "MessageAttributeNames": ["All"],
                "MessageSystemAttributeNames": ["All"],
            }
            if self.settings.visibility_timeout is not None:
                kwargs["VisibilityTimeout"] = self.settings.visibility_timeout
            got = self.sqs.receive_message(**kwargs).get("Messages", [])
            if not messages and got:
                deadline = time.monotonic() + window  # the window opens with the first message
            messages += got
            if not messages:
                break  # the queue is idle
            if window == 0:
                # No window: invoke with what is there, filling batches over 10 while it flows.
                if len(got) < requested:
                    break
                wait_now = 0
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            wait_now = min(20, int(remaining))
            if not got and wait_now == 0:
                time.sleep(min(0.1, remaining))
        return messages

    def process(self, source: QueueSource, messages: Sequence[Mapping[str, Any]]) -> int:
        """Hand ``messages`` to the handler; delete what it reports done. Returns deletions."""
        records = [to_lambda_record(m, source) for m in messages]
        event = {"Records": records}
        context = _Context(self.function_name, self.settings.function_timeout)
        ids = {r["messageId"] for r in records}
        failed: set[str]
        with self._lock:
            self.stats.batches += 1
            self.stats.received += len(records)
            try:
                response = self.handler(event, context)
                failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
                if not failed <= ids:
                    raise ValueError(f"response names unknown records: {sorted(failed - ids)}")
            except Exception as exc:
                self.stats.failed_batches += 1
                self.log.warning(
                    "batch failed",
                    f"{source.name}: batch of {len(records)} failed: {exc}",
                    queue=source.name,
                    records=len(records),
                    error=str(exc),
                )
                failed = ids
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            chunk = done[start : start + 10]
            deleted = self.sqs.delete_message_batch(
                QueueUrl=source.url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(chunk)
                ],
            )
            for problem in deleted.get("Failed", []):
                # The receipt expired (visibility timeout passed): SQS redelivers; the
                # version guard makes the second apply a no-op.
                why = problem.get("Message", problem)
                self.log.warning(
                    "delete failed",
                    f"{source.name}: delete failed: {why}",
                    queue=source.name,
                    error=str(why),
                )
        with self._lock:
            self.stats.deleted += len(done)
            self.stats.retried += len(failed)
        return len(done)

    def poll(self, source: QueueSource, wait: int | None = None) -> int:
        """Receive and process one batch from ``source``; returns messages received."""
        messages = self._receive(source, self.settings.wait_time if wait is None else wait)
        if messages:
            self.process(source, messages)
        return len(messages)

    # -- running ---------------------------------------------------------------------------

    def drain(self, *, idle_rounds: int = 1) -> RunnerStats:
        """Process until every queue returns nothing ``idle_rounds`` times in a row."""
        idle = 0
        while idle < idle_rounds:
            received = sum(self.poll(source, wait=0) for source in self.queues)
            idle = idle + 1 if received == 0 else 0
        return self.stats

    def run(
        self,
        *,
        stop: threading.Event | None = None,
        install_signals: bool = True,
        report_every: float = 10.0,
    ) -> RunnerStats:
        """Poll every queue until SIGTERM/SIGINT (or ``stop``); returns the totals."""
        stop = stop or threading.Event()
        if install_signals:
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, _stopper(stop, self))
        names = [q.name for q in self.queues]
        self.log.info("consuming", f"consuming {', '.join(names)}", queues=names)
        threads = [
            threading.Thread(target=self._loop, args=(q, stop), name=q.name, daemon=True)
            for q in self.queues
        ]
        for thread in threads:
            thread.start()
        started = last = time.monotonic()
        reported = 0
        while any(t.is_alive() for t in threads):
            stop.wait(min(report_every, 1.0))
            now = time.monotonic()
            if now - last >= report_every:
                rate = (self.stats.received - reported) / (now - last)
                self.log.info(
                    "consumer progress",
                    f"{self.stats.line()}; {rate:.0f} msg/s",
                    **self.stats.fields(),
                    per_second=round(rate, 1),
                )
                last, reported = now, self.stats.received
            if stop.is_set():
                for thread in threads:
                    thread.join()
        elapsed = time.monotonic() - started
        self.log.info(
            "consumer stopped",
            f"stopped after {elapsed:.1f} s: {self.stats.line()}",
            **self.stats.fields(),
            seconds=round(elapsed, 1),
        )
        return self.stats

    def _loop(self, source: QueueSource, stop: threading.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                self.poll(source)
                failures = 0
            except Exception as exc:
                failures += 1
                delay = float(min(30, 2**failures))
                self.log.warning(
                    "poll failed",
                    f"{source.name}: {exc}; retrying in {delay:.0f} s",
                    queue=source.name,
                    error=str(exc),
                    retry_in_s=delay,
                )
                stop.wait(delay)


def _stopper(stop: threading.Event, runner: EventSourceRunner) -> Callable[[int, Any], None]:
    def handle(signum: int, frame: Any) -> None:
        stop.set()
        with contextlib.suppress(Exception):
            name = signal.Signals(signum).name
            runner.log.info(
                "consumer stopping", f"{name}: finishing the batch in hand", signal=name
            )

    return handle
