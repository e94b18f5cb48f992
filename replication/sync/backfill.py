"""Backfill one consumer from its owner: every current row, in key order, as snapshots.

Pages of the owner's table are read by key (keyset pagination: constant memory,
no OFFSET), each row becomes an upsert at its current version, and the events
go straight to that consumer's queue (:class:`~replication.sync.send.ConsumerQueue`).
After each page is taken by SQS, a checkpoint file records the last key sent:
an interrupted backfill resumes after it. Safe while owners keep writing: a
newer live event, or a tombstone, wins over a snapshot by the version guard.
"""

from __future__ import annotations

__all__ = ["Backfill", "BackfillSummary", "Checkpoint"]

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError

from replication.dlq.move import RateLimit
from replication.errors import ConfigurationError
from replication.events import ChangeEvent, describe_validation_error
from replication.sync.send import ConsumerQueue
from replication.sync.source import OwnerSource
from replication.sync.where import Condition, filters

CHECKPOINT_FORMAT = "replication.backfill/1"


@dataclass
class Checkpoint:
    """Where a backfill is: the parameters it runs with and the last key sent."""

    path: Path
    entity: str
    version: int
    consumer: str
    where: list[str]
    queue: str = ""
    """The queue URL (another prefix or account is another backfill)."""
    owner: str = ""
    """The owner's database URL, password hidden."""
    after: list[Any] | None = None
    sent: int = 0
    done: bool = False

    def matches(self, other: Checkpoint) -> bool:
        """Whether ``other`` is the same backfill: entity, consumer, filter, queue, owner."""
        return self._identity() == other._identity()

    def _identity(self) -> tuple[Any, ...]:
        return (self.entity, self.version, self.consumer, self.where, self.queue, self.owner)

    def save(self) -> None:
        """Write it atomically (a crash leaves the old or the new file, never half)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "format": CHECKPOINT_FORMAT,
            "entity": self.entity,
            "version": self.version,
            "consumer": self.consumer,
            "where": self.where,
            "queue": self.queue,
            "owner": self.owner,
            "after": self.after,
            "sent": self.sent,
            "done": self.done,
        }
        temporary = self.path.with_name(self.path.name + ".tmp")
        with temporary.open("w", encoding="utf-8") as handle:
            json.dump(document, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)

    @classmethod
    def load(cls, path: Path) -> Checkpoint | None:
        """The checkpoint at ``path``, None when there is none."""
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"cannot read the checkpoint {path}: {exc}") from None
        if not isinstance(document, dict) or document.get("format") != CHECKPOINT_FORMAT:
            raise ConfigurationError(f"{path} is not a backfill checkpoint")
        try:
            return cls(
                path,
                document["entity"],
                document["version"],
                document["consumer"],
                list(document["where"]),
                document["queue"],
                document["owner"],
                document["after"],
                document["sent"],
                document["done"],
            )
        except (KeyError, TypeError) as exc:
            raise ConfigurationError(f"{path} is not a complete checkpoint ({exc})") from None


@dataclass
class BackfillSummary:
    """What a backfill run did."""

    sent: int = 0
    pages: int = 0
    resumed_after: int = 0
    """Events already sent by the interrupted run this one resumed."""
    seconds: float = 0.0
    skipped: list[str] = field(default_factory=list)
    """Rows not sent, with why (the key and the problem, never the values)."""


def _json_key(value: Any) -> Any:
    """A key part as the checkpoint's JSON keeps it: JSON values as they are, others as text."""
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return str(value)


@dataclass
class Backfill:
    """One backfill: a source, a consumer's queue, a filter, a checkpoint."""

    source: OwnerSource
    engine: sa.Engine
    queue: ConsumerQueue
    checkpoint: Checkpoint
    where: list[Condition] = field(default_factory=list)
    page_size: int = 500
    rate: RateLimit = field(default_factory=lambda: RateLimit(None))
    on_page: Callable[[int], None] = lambda sent: None

    def count(self) -> int:
        """Rows the filter selects (for the progress bar)."""
        query = sa.select(sa.func.count()).select_from(self.source.table).where(*self._filters())
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def _filters(self) -> list[Any]:
        dialect = self.engine.dialect.name
        return filters(self.where, self.source.expression, dialect)

    def run(self) -> BackfillSummary:
        """Send every selected row after the checkpoint's key; saves the checkpoint per page."""
        started = time.monotonic()
        summary = BackfillSummary(resumed_after=self.checkpoint.sent)
        after = tuple(self.checkpoint.after) if self.checkpoint.after is not None else None
        with self.engine.connect() as connection:
            for rows in self.source.pages(
                connection, size=self.page_size, after=after, where=self._filters()
            ):
                connection.rollback()  # no snapshot held open between pages
                events = self._events(rows, summary)
                for start in range(0, len(events), self.rate.batch):
                    chunk = events[start : start + self.rate.batch]
                    self.rate.wait(len(chunk))
                    self.queue.send(chunk)
                summary.sent += len(events)
                summary.pages += 1
                self.checkpoint.after = [_json_key(v) for v in self.source.key_of(rows[-1])]
                self.checkpoint.sent += len(events)
                self.checkpoint.save()
                self.on_page(len(events))
        self.checkpoint.done = True
        self.checkpoint.save()
        summary.seconds = time.monotonic() - started
        return summary

    def _events(self, rows: list[Any], summary: BackfillSummary) -> list[ChangeEvent]:
        """The rows' snapshots; a row that is not a valid state is skipped and noted."""
        events = []
        for row in rows:
            try:
                events.append(self.source.snapshot(row))
            except (ValidationError, ValueError, TypeError) as exc:
                key = ",".join(str(part) for part in self.source.key_of(row))
                reason = describe_validation_error(exc) if isinstance(exc, ValidationError) else exc
                summary.skipped.append(f"{key}: {reason}")
        return events
