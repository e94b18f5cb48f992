"""The change event and its wire format, a CloudEvents 1.0 structured JSON document.

``upserted(...)`` and ``deleted(...)`` build events, :func:`encode_event` turns
one into bytes and :func:`decode_event` turns bytes back into a validated
event, raising :class:`~replication.errors.InvalidEventError` with a precise
reason for anything that can never be applied.
"""

from __future__ import annotations

__all__ = [
    "DELETED",
    "UPSERTED",
    "ChangeEvent",
    "decode_event",
    "deleted",
    "encode_event",
    "upserted",
]

import datetime as dt
import json
import re
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from pydantic import ValidationError

from replication.contracts import (
    Contract,
    ContractInfo,
    ContractRegistry,
    registry,
    unportable_reason,
)
from replication.email_domains import cache_domain_checks, shortcut_plain_addresses
from replication.errors import InvalidEventError, UnknownContractError
from replication.keys import decode_subject, encode_subject
from replication.wire import (
    RFC3339_RE,
    StrictJSONError,
    loads_strict,
    parse_rfc3339,
    writable_offsets,
)

UPSERTED: Final = "upserted"
DELETED: Final = "deleted"
Op = Literal["upserted", "deleted"]

SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"
REQUIRED_ATTRIBUTES = (
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "dataschema",
    "datacontenttype",
    "entityversion",
    "data",
)
_KNOWN = frozenset(REQUIRED_ATTRIBUTES)
# ASCII digits only, no leading zero: 'v01' would be a second spelling of 'v1'.
_MAJOR_RE = re.compile(r"[1-9][0-9]{0,8}")
# The only text uuid.UUID writes; it also reads braces, 'urn:uuid:', upper case, no hyphens.
_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
MAX_ENTITY_VERSION = 2**63 - 1
"""The highest entity version a mirror's 64-bit version column holds."""


@dataclass(frozen=True, slots=True, repr=False)
class ChangeEvent:
    """One change of one entity key: its full state at ``version``, or its deletion."""

    id: uuid.UUID
    contract: ContractInfo
    op: Op
    key: tuple[Any, ...]
    version: int
    time: dt.datetime
    data: Contract | None
    wire_id: str | None = field(default=None, compare=False)
    """The id as a decoded event's wire form wrote it (canonical: ``str(id)``)."""
    wire_subject: str | None = field(default=None, compare=False)
    """The subject as a decoded event's wire form wrote it (checked: ``encode_subject(key)``)."""

    def __repr__(self) -> str:
        # Never show data: it may hold pii.
        return (
            f"ChangeEvent({self.type} subject={self.subject!r} version={self.version} id={self.id})"
        )

    @property
    def entity(self) -> str:
        """The entity name, e.g. ``crm.customer``."""
        return self.contract.entity

    @property
    def source(self) -> str:
        """The owning service."""
        return self.contract.owner

    @property
    def subject(self) -> str:
        """The key as the event's ``subject`` string."""
        return self.wire_subject or encode_subject(self.key)

    @property
    def id_text(self) -> str:
        """The id in its canonical text form."""
        return self.wire_id or str(self.id)

    @property
    def type(self) -> str:
        """The CloudEvents ``type``, e.g. ``crm.customer.upserted``."""
        return f"{self.contract.entity}.{self.op}"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _check_version(version: int) -> None:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"entity version must be a positive integer, got {version!r}")


def upserted(
    state: Contract,
    version: int,
    *,
    time: dt.datetime | None = None,
    event_id: uuid.UUID | None = None,
) -> ChangeEvent:
    """The event saying that ``state`` is the full current state of its key at ``version``."""
    _check_version(version)
    when = time or _now()
    if when.tzinfo is None:
        raise ValueError("event time must be timezone-aware")
    return ChangeEvent(
        id=event_id or uuid.uuid4(),
        contract=state.__contract__,
        op=UPSERTED,
        key=state.key_values(),
        version=version,
        time=when,
        data=state,
    )


def deleted(
    contract: type[Contract] | ContractInfo,
    key: Any,
    version: int,
    *,
    time: dt.datetime | None = None,
    event_id: uuid.UUID | None = None,
) -> ChangeEvent:
    """The event saying that ``key`` was deleted at ``version``."""
    _check_version(version)
    info = contract if isinstance(contract, ContractInfo) else contract.__contract__
    parts = key if isinstance(key, tuple) else (key,)
    typed = decode_subject(info, encode_subject(parts))
    when = time or _now()
    if when.tzinfo is None:
        raise ValueError("event time must be timezone-aware")
    return ChangeEvent(
        id=event_id or uuid.uuid4(),
        contract=info,
        op=DELETED,
        key=typed,
        version=version,
        time=when,
        data=None,
    )


def _rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def to_document(event: ChangeEvent) -> dict[str, Any]:
    """The event as a CloudEvents structured-mode JSON object (before serialisation)."""
    return {
        "specversion": SPECVERSION,
        "id": str(event.id),
        "source": event.source,
        "type": event.type,
        "subject": event.subject,
        "time": _rfc3339(event.time),
        "dataschema": event.contract.contract_id,
        "datacontenttype": CONTENT_TYPE,
        "entityversion": event.version,
        "data": None
        if event.data is None
        else writable_offsets(event.data).model_dump(mode="json"),
    }


def encode_event(event: ChangeEvent) -> bytes:
    """The event's wire form: compact UTF-8 JSON."""
    document = to_document(event)
    try:
        # Python would write the tokens NaN and Infinity, which are not JSON.
        text = json.dumps(document, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError as exc:
        raise ValueError(
            f"{event!r} cannot be encoded ({exc}): NaN and Infinity have no JSON form"
        ) from None
    return text.encode()


def decode_event(
    raw: bytes | str,
    contracts: ContractRegistry = registry,
    *,
    fields: Collection[str] | None = None,
) -> ChangeEvent:
    """Parse and validate a wire event; raises InvalidEventError naming what is wrong.

    With ``fields`` (a consumer's mirrored fields) the data is read the way a
    consumer reads it: only those fields and the key are validated, and any
    other field, known or not, is ignored (see ``ContractInfo.reader``).
    """
    global _domains_cached
    try:
        document = loads_strict(raw)
    except StrictJSONError as exc:
        raise InvalidEventError(str(exc)) from None
    if not isinstance(document, dict):
        raise InvalidEventError(f"a change event must be a JSON object, got {_json_type(document)}")
    if not _domains_cached:
        _domains_cached = cache_domain_checks() and shortcut_plain_addresses()
    return _decode_document(document, contracts, fields)


_domains_cached = False
"""Whether e-mail validation is sped up (once pydantic has imported email_validator)."""


def _decode_document(
    doc: dict[str, Any], contracts: ContractRegistry, fields: Collection[str] | None
) -> ChangeEvent:
    given = doc.get("id")
    # Named in reasons, logs and the failures table only in its one valid form: any other
    # text is the sender's (a lone surrogate, megabytes), quoted in the reason with repr.
    event_id = given if isinstance(given, str) and _UUID_RE.fullmatch(given) else None

    def fail(reason: str) -> InvalidEventError:
        return InvalidEventError(reason, event_id=event_id)

    if doc.keys() != _KNOWN:  # every attribute is required: exactly these, in one test
        missing = [name for name in REQUIRED_ATTRIBUTES if name not in doc]
        if missing:
            raise fail(f"missing attribute(s): {', '.join(missing)}")
        raise fail(f"unknown attribute(s): {', '.join(sorted(set(doc) - _KNOWN))}")
    if doc["specversion"] != SPECVERSION:
        raise fail(f"specversion must be {SPECVERSION!r}, got {doc['specversion']!r}")
    for name in ("id", "source", "type", "subject", "time", "dataschema", "datacontenttype"):
        if not isinstance(doc[name], str) or not doc[name]:
            raise fail(f"attribute {name} must be a non-empty string, got {doc[name]!r}")
    if event_id is None:  # a string (just checked), but not a canonical UUID
        raise fail(
            "id must be a UUID in canonical form (lower-case, hyphenated 8-4-4-4-12), "
            f"got {doc['id']!r}"
        )
    parsed_id = uuid.UUID(doc["id"])
    if doc["datacontenttype"] != CONTENT_TYPE:
        raise fail(f"datacontenttype must be {CONTENT_TYPE!r}, got {doc['datacontenttype']!r}")
    head = (doc["dataschema"], doc["source"], doc["type"])
    resolved = contracts.memo.get(head)
    if resolved is None:
        info = _contract_of(doc, contracts, fail)
        op = _op_of(doc, info, fail)
        contracts.memo[head] = (info, op)  # only heads that resolve: one per contract and op
    else:
        info, op = resolved
    version = doc["entityversion"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise fail(f"entityversion must be an integer, got {version!r}")
    if version < 1:
        raise fail(f"entityversion must be positive, got {version}")
    if version > MAX_ENTITY_VERSION:
        # Mirrors keep the version in a 64-bit column.
        raise fail(f"entityversion must be at most {MAX_ENTITY_VERSION}, got {version}")
    time = _time_of(doc["time"], fail)
    data = doc["data"]
    if op == DELETED:
        if data is not None:
            raise fail("data must be null on a deleted event")
        try:
            key = decode_subject(info, doc["subject"])
        except ValueError as exc:
            raise fail(f"subject: {exc}") from None
        _check_key_lengths(info, key, fail)
        return ChangeEvent(parsed_id, info, op, key, version, time, None, doc["id"], doc["subject"])
    if not isinstance(data, dict):
        raise fail(f"data of an upserted event must be a JSON object, got {_json_type(data)}")
    try:
        model = info.model if fields is None else info.reader(fields)
        state = model.model_validate(data)
    except ValidationError as exc:
        raise fail(f"data violates {info.label}: {describe_validation_error(exc)}") from None
    key = state.key_values()
    expected = encode_subject(key)
    if doc["subject"] != expected:
        raise fail(f"subject {doc['subject']!r} does not match the key in data ({expected!r})")
    _check_key_lengths(info, key, fail)
    return ChangeEvent(parsed_id, info, op, key, version, time, state, doc["id"], expected)


def _contract_of(doc: dict[str, Any], contracts: ContractRegistry, fail: Any) -> ContractInfo:
    schema: str = doc["dataschema"]
    prefix = "contract:"
    entity, sep, major = schema.removeprefix(prefix).rpartition("/v")
    if not schema.startswith(prefix) or not sep or not _MAJOR_RE.fullmatch(major):
        raise fail(
            f"dataschema must look like 'contract:<owner>.<entity>/v<major>' (major: a positive "
            f"integer without leading zeros), got {schema!r}"
        )
    try:
        info = contracts.get(entity, int(major))
    except UnknownContractError as exc:
        raise fail(str(exc)) from None
    if doc["source"] != info.owner:
        raise fail(
            f"source {doc['source']!r} is not the owner of {info.entity} (owner: {info.owner!r})"
        )
    return info


def _op_of(doc: dict[str, Any], info: ContractInfo, fail: Any) -> Op:
    kind: str = doc["type"]
    for op in (UPSERTED, DELETED):
        if kind == f"{info.entity}.{op}":
            return op
    raise fail(
        f"type must be '{info.entity}.upserted' or '{info.entity}.deleted' "
        f"for dataschema {info.contract_id}, got {kind!r}"
    )


def _time_of(value: str, fail: Any) -> dt.datetime:
    # Not datetime.fromisoformat: it also reads ISO 8601 forms RFC 3339 excludes (basic
    # format, week dates, 'T00Z', any separator, a comma before the fraction).
    match = RFC3339_RE.fullmatch(value)
    if match is None:
        raise fail(f"time must be an RFC 3339 timestamp, got {value!r}")
    if match["offset"] is None:
        raise fail(f"time {value!r} has no UTC offset (naive datetimes are ambiguous)")
    try:
        when = parse_rfc3339(match)
    except ValueError:
        raise fail(f"time must be an RFC 3339 timestamp, got {value!r}") from None
    if unportable_reason(when):  # with its offset, only the range: mirrors store UTC times
        raise fail(f"time {value!r} is out of range once converted to UTC")
    return when


def _check_key_lengths(info: ContractInfo, key: tuple[Any, ...], fail: Any) -> None:
    for spec, value in zip(info.key_specs, key, strict=True):
        limit = spec.max_length or KEY_TEXT_LENGTH
        if isinstance(value, str) and len(value) > limit:
            raise fail(f"key field {spec.name} is longer than {limit} characters")


KEY_TEXT_LENGTH = 255
"""Column length of a text key field that declares no ``max_length``."""


def _json_type(value: Any) -> str:
    # JSON's names for JSON's types: a reason about the wire should not speak Python.
    return {
        dict: "object",
        list: "array",
        str: "string",
        int: "number",
        float: "number",
        bool: "boolean",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def describe_validation_error(exc: ValidationError) -> str:
    """A pydantic error as ``field: problem`` items, without echoing input values."""
    items = []
    for error in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in error["loc"]) or "(root)"
        message = error["msg"].removeprefix("Value error, ")
        items.append(f"{where}: {message}")
    return "; ".join(items)
