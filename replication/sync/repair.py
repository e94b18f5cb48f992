"""Repair a mirror: republish the keys a reconcile found, to that consumer only.

Keys the owner has (missing, older, differs) are read again from the owner's
table and sent as snapshots at their current version; keys the owner no
longer has (extra) get a tombstone one version above the mirror's row. Keys
where the mirror is ahead of its owner are not touched: no event from the
owner can lower a version, and the owner's data needs looking at first.
"""

from __future__ import annotations

__all__ = ["RepairSummary", "repair"]

from dataclasses import dataclass, field

import sqlalchemy as sa

from replication.events import ChangeEvent, deleted, upserted
from replication.manifest import MirrorDeclaration
from replication.sync.reconcile import Drift, Reconciliation
from replication.sync.send import ConsumerQueue
from replication.sync.source import OwnerSource

CHUNK = 500


@dataclass
class RepairSummary:
    """What a repair sent."""

    snapshots: int = 0
    tombstones: int = 0
    gone: int = 0
    """Keys the owner deleted between the reconcile and the repair (its own event follows)."""
    untouched: list[str] = field(default_factory=list)
    """Subjects left alone (the mirror is ahead of the owner)."""


def repair(
    result: Reconciliation,
    source: OwnerSource,
    declaration: MirrorDeclaration,
    owner: sa.Engine,
    queue: ConsumerQueue,
) -> RepairSummary:
    """Send what makes the mirror equal its owner again, for every drift in ``result``."""
    summary = RepairSummary()
    present = [d for d in result.drifts if d.kind in ("missing", "older", "differs")]
    summary.untouched = [d.subject for d in result.drifts if d.kind == "ahead"]
    for start in range(0, len(present), CHUNK):
        events = _snapshots(source, owner, present[start : start + CHUNK])
        summary.gone += min(CHUNK, len(present) - start) - len(events)
        summary.snapshots += queue.send(events)
    tombstones: list[ChangeEvent] = [
        deleted(declaration.contract, d.key, (d.mirror_version or 0) + 1)
        for d in result.drifts
        if d.kind == "extra"
    ]
    summary.tombstones = queue.send(tombstones)
    return summary


def _snapshots(source: OwnerSource, owner: sa.Engine, drifts: list[Drift]) -> list[ChangeEvent]:
    query = source.select().where(sa.tuple_(*source.keys()).in_([d.key for d in drifts]))
    with owner.connect() as connection:
        rows = list(connection.execute(query))
    return [upserted(source.state(row), int(row._mapping[source.version])) for row in rows]
