"""The apply decision as plain functions over plain data (no database, no driver).

Rules (ARCHITECTURE section 4): a batch is reduced to the highest version per
key before it is written; an event at version V changes a mirror row only when
the row is absent or holds a version below V; a delete becomes a tombstone at
V under the same rule.
"""

from __future__ import annotations

__all__ = ["ApplyResult", "reduce_batch"]

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from replication.events import ChangeEvent


@dataclass(frozen=True)
class ApplyResult:
    """What one apply did: every received event is counted exactly once."""

    received: int = 0
    applied: int = 0
    """Upserts written (a row inserted or replaced by a newer version)."""
    deleted: int = 0
    """Deletes written as tombstones."""
    stale: int = 0
    """Events at or below the mirror's version for their key: no-ops."""
    collapsed: int = 0
    """Events dropped while reducing the batch: duplicates or superseded in the batch."""
    written: frozenset[str] = field(default=frozenset(), compare=False, repr=False)
    """Ids of the events whose rows were written (applied or deleted)."""

    def __add__(self, other: ApplyResult) -> ApplyResult:
        return ApplyResult(
            self.received + other.received,
            self.applied + other.applied,
            self.deleted + other.deleted,
            self.stale + other.stale,
            self.collapsed + other.collapsed,
            self.written | other.written,
        )


def reduce_batch(events: Iterable[ChangeEvent]) -> list[ChangeEvent]:
    """Keep, for each key, only the event with the highest version (first seen on ties).

    The result is sorted by key, so that concurrent appliers lock rows in one
    order and do not deadlock each other.
    """
    best: dict[tuple[Any, ...], ChangeEvent] = {}
    for event in events:
        current = best.get(event.key)
        if current is None or event.version > current.version:
            best[event.key] = event
    return [best[key] for key in sorted(best, key=_order)]


def _order(key: tuple[Any, ...]) -> tuple[Any, ...]:
    # A UUID orders by its integer; comparing that is C's work, where comparing UUIDs calls
    # their Python __eq__ and __lt__ at each step of the sort.
    return tuple(part.int if type(part) is uuid.UUID else part for part in key)
