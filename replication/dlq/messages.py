"""Dead-lettered messages as on-call reads them: where from, why, which change event.

Pure: no AWS call, no database. A :class:`DeadLetter` is one message of a DLQ
as received (body, message attributes, SQS system attributes); a
:class:`Described` adds what could be read out of it: the change event (or why
it cannot be decoded), the reason it was dead-lettered, the queue it came from.

Which reason to trust: the consumer dead-letters poison by sending a new
message with its ``replication.*`` attributes. A message SQS moved after
``maxReceiveCount`` receives keeps the attributes its sender set, and carries
the system attribute ``DeadLetterQueueSourceArn``, which only SQS sets. On such
a message the ``replication.*`` dead-letter attributes are the sender's words:
its reason is kept apart as :attr:`Described.sender_reason`, never taken as the
consumer's, and its source queue is read from the ARN.
"""

from __future__ import annotations

__all__ = [
    "MOVED_BY_SQS",
    "REPLAYS",
    "UNRECORDED",
    "DeadLetter",
    "Described",
    "FailureRecord",
    "Selection",
    "describe",
    "masked_document",
    "parse_when",
    "reason_summary",
    "replay_attributes",
]

import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from replication.consumer.dead_letters import (
    FAILED_AT,
    MAX_ATTRIBUTES,
    MESSAGE_ID,
    REASON,
    RECEIVE_COUNT,
    REPLAYS,
    SOURCE_QUEUE,
)
from replication.consumer.records import unwrap_body
from replication.contracts import ContractInfo, ContractRegistry, registry
from replication.errors import InvalidEventError
from replication.events import REQUIRED_ATTRIBUTES, ChangeEvent, decode_event
from replication.masking import UNKNOWN_MODEL, Mask, masked_json
from replication.payloads import parse_pointer

_DEAD_LETTER_ATTRIBUTES = (REASON, SOURCE_QUEUE, MESSAGE_ID, RECEIVE_COUNT, FAILED_AT)
MASK = "***"
MOVED_BY_SQS = "DeadLetterQueueSourceArn"
"""The SQS system attribute of a message SQS moved to a DLQ: its source queue's ARN."""
UNRECORDED = "moved by SQS after maxReceiveCount receives (no reason recorded by the consumer)"
"""The reason of a message SQS moved, when the consumer's failures table has none."""

Kind = Literal["permanent", "transient", "unknown"]


@dataclass(frozen=True)
class DeadLetter:
    """One message of a DLQ, as SQS returned it."""

    dlq: str
    message_id: str
    receipt_handle: str
    body: str
    attributes: dict[str, dict[str, Any]]
    """Message attributes in SendMessage's shape (``DataType``, ``StringValue`` or bytes)."""
    system: dict[str, str] = field(default_factory=dict)
    """SQS system attributes: ``SentTimestamp``, ``MessageGroupId``, ``ApproximateReceiveCount``."""

    @classmethod
    def from_sqs(cls, dlq: str, message: Mapping[str, Any]) -> DeadLetter:
        """A message as ``ReceiveMessage`` returns it."""
        attributes = {}
        for name, value in (message.get("MessageAttributes") or {}).items():
            kept = {"DataType": value["DataType"]}
            if "StringValue" in value:
                kept["StringValue"] = value["StringValue"]
            if "BinaryValue" in value:
                kept["BinaryValue"] = value["BinaryValue"]
            attributes[name] = kept
        return cls(
            dlq=dlq,
            message_id=message["MessageId"],
            receipt_handle=message.get("ReceiptHandle", ""),
            body=message["Body"],
            attributes=attributes,
            system={k: str(v) for k, v in (message.get("Attributes") or {}).items()},
        )

    def text(self, name: str) -> str | None:
        """The string value of message attribute ``name``, if it has one."""
        value = self.attributes.get(name)
        return value.get("StringValue") if value else None

    @property
    def group_id(self) -> str | None:
        """The FIFO message group, if any."""
        return self.system.get("MessageGroupId")

    @property
    def sent_at(self) -> dt.datetime | None:
        """When the message was first sent (kept when SQS moves it to the DLQ)."""
        stamp = self.system.get("SentTimestamp")
        return dt.datetime.fromtimestamp(int(stamp) / 1000, dt.UTC) if stamp else None

    @property
    def moved_from(self) -> str | None:
        """The ARN of the queue SQS moved it from, or None when SQS did not move it."""
        return self.system.get(MOVED_BY_SQS) or None

    def dead_letter_text(self, name: str) -> str | None:
        """A dead-letter attribute (``replication.reason``...) as the consumer wrote it.

        None on a message SQS moved: the consumer did not send it, so whatever
        such attribute it carries was set by its sender.
        """
        return None if self.moved_from else self.text(name)

    @property
    def consumer_reason(self) -> str | None:
        """Why the consumer dead-lettered it, when it did."""
        return self.dead_letter_text(REASON)

    @property
    def sender_reason(self) -> str | None:
        """A ``replication.reason`` on a message SQS moved: set by its sender, not trusted."""
        return self.text(REASON) if self.moved_from else None

    @property
    def failed_at(self) -> dt.datetime | None:
        """When the consumer dead-lettered it, else when it was sent."""
        stamp = self.dead_letter_text(FAILED_AT)
        if stamp:
            try:
                return dt.datetime.fromisoformat(stamp)
            except ValueError:
                pass
        return self.sent_at

    @property
    def source_message_id(self) -> str:
        """Its message id in the source queue (SQS keeps the id when it redrives)."""
        return self.dead_letter_text(MESSAGE_ID) or self.message_id

    @property
    def replays(self) -> int:
        """How many times it was replayed before."""
        try:
            return int(self.text(REPLAYS) or 0)
        except ValueError:
            return 0


@dataclass(frozen=True)
class Described:
    """A dead letter with its source queue, reason and change event read out."""

    letter: DeadLetter
    source_queue: str
    info: ContractInfo
    reason: str
    kind: Kind
    receive_count: int | None
    event: ChangeEvent | None
    problem: str | None
    """Why the body does not decode to a valid change event (None when it does)."""
    subject: str | None
    pointer: str | None = None
    """``s3://bucket/key`` when the event was offloaded (not fetched here)."""
    sender_reason: str | None = None
    """A ``replication.reason`` the consumer did not write (see the module docstring)."""

    @property
    def entity(self) -> str:
        """The entity of the source queue's mirror."""
        return self.info.entity

    @property
    def when(self) -> dt.datetime | None:
        """When it failed (or, without a record of that, when it was sent)."""
        return self.letter.failed_at


@dataclass(frozen=True)
class FailureRecord:
    """What the consumer's failures table says about a message."""

    reason: str
    kind: str
    receive_count: int


def describe(
    letter: DeadLetter,
    source_queue: str,
    info: ContractInfo,
    recorded: FailureRecord | None = None,
    fields: Sequence[str] = (),
) -> Described:
    """Read ``letter`` (dead-lettered from ``source_queue``, a queue of ``info``).

    With ``fields`` (what the consumer mirrors) the event is read as the
    consumer reads it: other fields, known or not, are not checked. A letter
    SQS moved names its source queue itself.
    """
    if letter.moved_from:
        source_queue = letter.moved_from.rpartition(":")[2] or source_queue
    reason = letter.consumer_reason
    kind: Kind
    receive_count: int | None
    if reason is not None:
        kind = "permanent"
        count = letter.dead_letter_text(RECEIVE_COUNT)
        receive_count = int(count) if count and count.isdigit() else None
    elif recorded is not None:
        kind = "transient" if recorded.kind == "transient" else "permanent"
        reason = recorded.reason
        receive_count = recorded.receive_count
    else:
        kind = "unknown"
        reason = UNRECORDED
        receive_count = None
    event = problem = subject = pointer = None
    try:
        envelope = unwrap_body(letter.body)
        found = parse_pointer(envelope.message)
        if found is not None:
            pointer = f"s3://{found[0]}/{found[1]}"
        else:
            event = decode_event(envelope.message, fields=fields or None)
            subject = event.subject
    except InvalidEventError as exc:
        problem = str(exc)
    except Exception as exc:  # one message's content never stops the listing of the others
        problem = f"could not be decoded: {type(exc).__name__}: {str(exc)[:200]}"
    if subject is None:
        subject = _raw_subject(letter.body)
    return Described(
        letter,
        source_queue,
        info,
        reason,
        kind,
        receive_count,
        event,
        problem,
        subject,
        pointer,
        letter.sender_reason,
    )


def _document(body: str) -> dict[str, Any] | None:
    """The change event's JSON object, through an SNS envelope, or None."""
    try:
        document = json.loads(body)
        if isinstance(document, dict) and isinstance(document.get("Message"), str):
            document = json.loads(document["Message"])
    except (ValueError, RecursionError):
        return None
    return document if isinstance(document, dict) else None


def _raw_subject(body: str) -> str | None:
    document = _document(body)
    subject = document.get("subject") if document else None
    return subject if isinstance(subject, str) else None


def masked_document(
    body: str,
    info: ContractInfo,
    *,
    show_pii: bool,
    contracts: ContractRegistry = registry,
) -> dict[str, Any] | None:
    """The change event as JSON with ``pii`` and unknown fields masked; None when not JSON.

    The data is masked by the contract the event names (``info`` when it is
    the DLQ's own, else one of ``contracts``): pii fields at any depth, and
    every field that contract does not declare, are shown as ``***``. The data
    of a contract nobody here knows is masked field by field, and so is an
    attribute that is not a CloudEvents attribute of a change event. The
    subject (the key, never pii) is shown. Works on events that do not
    validate too, so on-call can read what is wrong without seeing personal data.
    """
    document = _document(body)
    if document is None or show_pii:
        return document
    masked: dict[str, Any] = {}
    for name, value in document.items():
        if name == "data":
            try:
                masked[name] = masked_json(value, _data_mask(document, info, contracts), MASK)
            except RecursionError:
                masked[name] = MASK
        elif name in REQUIRED_ATTRIBUTES or value is None:
            masked[name] = value
        else:
            masked[name] = MASK
    return masked


def _data_mask(document: dict[str, Any], info: ContractInfo, contracts: ContractRegistry) -> Mask:
    """The mask of the data of the contract ``document`` names."""
    schema = document.get("dataschema")
    if schema == info.contract_id:
        return info.mask
    if isinstance(schema, str) and schema.startswith("contract:"):
        entity, _, major = schema.removeprefix("contract:").rpartition("/v")
        if major.isdigit() and len(major) < 10:
            found = contracts.find(entity, int(major))
            if found is not None:
                return found.mask
    return UNKNOWN_MODEL


def replay_attributes(letter: DeadLetter) -> dict[str, dict[str, Any]]:
    """The attributes a replayed message carries: the original ones, and the replay count.

    The dead-letter attributes (reason, source queue...) are dropped, so a
    replayed message that fails again gets fresh ones.
    """
    kept = {
        name: value
        for name, value in letter.attributes.items()
        if name not in _DEAD_LETTER_ATTRIBUTES and name != REPLAYS
    }
    if len(kept) < MAX_ATTRIBUTES:  # SQS refuses an 11th; the count is the one to give up
        kept[REPLAYS] = {"DataType": "Number", "StringValue": str(letter.replays + 1)}
    return kept


_RELATIVE = re.compile(r"(\d+)\s*([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_when(text: str, *, now: dt.datetime | None = None) -> dt.datetime:
    """An ISO 8601 time (UTC if no offset) or a duration ago: ``30m``, ``2h``, ``7d``."""
    text = text.strip()
    relative = _RELATIVE.fullmatch(text)
    if relative:
        seconds = int(relative.group(1)) * _UNITS[relative.group(2)]
        return (now or dt.datetime.now(dt.UTC)) - dt.timedelta(seconds=seconds)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: use ISO 8601 (2026-11-27T03:00:00Z) or a duration "
            "ago (30m, 2h, 7d)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_NUMBER = re.compile(r"\b\d+(\.\d+)?\b")


def reason_summary(reason: str, limit: int = 100) -> str:
    """A reason with ids, quoted values and numbers blanked: reasons that differ only there
    group together."""
    text = _UUID.sub("<id>", reason)
    text = _QUOTED.sub("<value>", text)
    text = _NUMBER.sub("<n>", text)
    text = re.sub(r"^event <id>: ", "", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Selection:
    """Which dead letters a command acts on; every given condition must hold."""

    entity: str | None = None
    key: str | None = None
    reason: str | None = None
    """Case-insensitive substring of the reason."""
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    message_ids: frozenset[str] = frozenset()

    @property
    def everything(self) -> bool:
        """Whether it selects every message (no condition)."""
        return not (
            self.entity or self.key or self.reason or self.since or self.until or self.message_ids
        )

    def matches(self, item: Described) -> bool:
        """Whether ``item`` is selected."""
        if self.entity and self.entity not in (item.entity, item.info.label):
            return False
        if self.key is not None and item.subject != self.key:
            return False
        if self.reason and self.reason.lower() not in item.reason.lower():
            return False
        when = item.when
        if self.since and (when is None or when < self.since):
            return False
        if self.until and (when is None or when > self.until):
            return False
        return not self.message_ids or bool(
            {item.letter.message_id, item.letter.source_message_id} & self.message_ids
        )
