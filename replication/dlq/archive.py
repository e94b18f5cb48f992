"""Dead letters as JSON Lines: export without loss, import back into a queue.

One JSON object per line: the DLQ it was read from, its message id, the body
exactly, every message attribute with its data type (binary values in
base64), the SQS system attributes, and what on-call needs to read the file
alone (source queue, entity, reason). Importing sends each line's body and
attributes unchanged, in file order, FIFO group ids kept.
"""

from __future__ import annotations

__all__ = ["FORMAT", "ArchiveError", "ArchivedMessage", "read_archive", "to_line"]

import base64
import binascii
import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from replication.dlq.messages import Described
from replication.errors import ConfigurationError

FORMAT = "replication.dlq/1"


class ArchiveError(ConfigurationError):
    """An export file cannot be read; carries every bad line."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.problems = problems
        shown = "\n".join(f"  {p}" for p in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(f"{path}: {len(problems)} bad line(s), nothing imported:\n{shown}{more}")


def _attributes_out(attributes: dict[str, dict[str, Any]]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for name, value in attributes.items():
        kept = {"DataType": value["DataType"]}
        if "StringValue" in value:
            kept["StringValue"] = value["StringValue"]
        if "BinaryValue" in value:
            kept["BinaryValue"] = base64.b64encode(value["BinaryValue"]).decode()
        out[name] = kept
    return out


def to_line(item: Described, *, exported_at: dt.datetime | None = None) -> str:
    """One export line for a dead letter (ends with a newline)."""
    letter = item.letter
    document = {
        "format": FORMAT,
        "queue": letter.dlq,
        "message_id": letter.message_id,
        "body": letter.body,
        "attributes": _attributes_out(letter.attributes),
        "system": letter.system,
        "source_queue": item.source_queue,
        "entity": item.info.label,
        "reason": item.reason,
        "kind": item.kind,
        "exported_at": (exported_at or dt.datetime.now(dt.UTC)).isoformat(),
    }
    return json.dumps(document, ensure_ascii=False) + "\n"


@dataclass(frozen=True)
class ArchivedMessage:
    """One line of an export file."""

    line: int
    queue: str
    message_id: str
    body: str
    attributes: dict[str, dict[str, Any]]
    """In SendMessage's shape (binary values as bytes)."""
    group_id: str | None
    source_queue: str | None
    raw: str
    """The line as it is in the file."""


def _attributes_in(value: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict):
        raise ValueError("attributes must be an object")
    out: dict[str, dict[str, Any]] = {}
    for name, attribute in value.items():
        if not isinstance(attribute, dict) or not isinstance(attribute.get("DataType"), str):
            raise ValueError(f"attribute {name!r} has no DataType")
        kept: dict[str, Any] = {"DataType": attribute["DataType"]}
        if isinstance(attribute.get("StringValue"), str):
            kept["StringValue"] = attribute["StringValue"]
        elif isinstance(attribute.get("BinaryValue"), str):
            try:
                kept["BinaryValue"] = base64.b64decode(attribute["BinaryValue"], validate=True)
            except binascii.Error:
                raise ValueError(f"attribute {name!r}: BinaryValue is not base64") from None
        else:
            raise ValueError(f"attribute {name!r} has neither StringValue nor BinaryValue")
        out[name] = kept
    return out


def _parse(number: int, text: str) -> ArchivedMessage:
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    if document.get("format") != FORMAT:
        raise ValueError(f"format is {document.get('format')!r}, expected {FORMAT!r}")
    for name in ("queue", "message_id", "body"):
        if not isinstance(document.get(name), str):
            raise ValueError(f"{name} must be a string")
    system = document.get("system") or {}
    if not isinstance(system, dict):
        raise ValueError("system must be an object")
    source = document.get("source_queue")
    return ArchivedMessage(
        line=number,
        queue=document["queue"],
        message_id=document["message_id"],
        body=document["body"],
        attributes=_attributes_in(document.get("attributes") or {}),
        group_id=system.get("MessageGroupId"),
        source_queue=source if isinstance(source, str) else None,
        raw=text,
    )


def read_archive(path: Path) -> list[ArchivedMessage]:
    """Every message of an export file; ArchiveError listing every bad line."""
    if not path.exists():
        raise ConfigurationError(f"no such file: {path}")
    messages: list[ArchivedMessage] = []
    problems: list[str] = []
    for number, text in enumerate(_lines(path), start=1):
        if not text.strip():
            continue
        try:
            messages.append(_parse(number, text))
        except ValueError as exc:
            problems.append(f"line {number}: {exc}")
    if problems:
        raise ArchiveError(path, problems)
    return messages


def _lines(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8") as handle:
        for text in handle:
            yield text.rstrip("\n")
