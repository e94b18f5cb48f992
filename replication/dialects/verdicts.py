"""What a database error means for the records being applied: the verdicts dialects give.

Three answers, each with a different remedy:

- ``CONNECTION``: the connection is gone (server restarted, backend killed,
  network). Reconnect; the records are fine.
- ``TRANSIENT``: the database refused for now (deadlock, serialization
  failure, lock timeout, a mirror column or table that a pending migration
  adds). Retry later; SQS redelivers.
- ``DATA``: the database refused a value (invalid byte sequence, NUL in text,
  out of range). Some record in the batch is poison; isolate it.
"""

from __future__ import annotations

__all__ = ["CONNECTION", "DATA", "TRANSIENT", "Kind", "Verdict", "first_line", "missing_reason"]

import re
from dataclasses import dataclass
from typing import Final, Literal

Kind = Literal["connection", "transient", "data"]
CONNECTION: Final = "connection"
TRANSIENT: Final = "transient"
DATA: Final = "data"


@dataclass(frozen=True)
class Verdict:
    """How to treat a database error, and why in words an operator can act on."""

    kind: Kind
    reason: str


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, or its type's name when it has none."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def missing_reason(what: str, message: str, service: str) -> str:
    """The reason given when the mirror lacks a ``what`` (column, table) a migration adds."""
    name = re.search(r"[\"'`]([^\"'`]+)[\"'`]", message)
    subject = f"{what} {name.group(1)}" if name else f"a {what}"
    return (
        f"the mirror lacks {subject}: a migration is pending; apply it "
        f"(replication migrations upgrade --service {service}) and the retries will succeed "
        f"({message})"
    )
