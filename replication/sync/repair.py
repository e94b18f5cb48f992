"""Repair a mirror: republish the keys a reconcile found, to that consumer only.

Keys the owner has (missing, older, differs) are read again from the owner's
table and sent as snapshots at their current version; keys the owner no
longer has (extra) get a tombstone one version above the mirror's row, after
checking, key by key and without any ``--where`` filter, that the owner
really has no such row (one it has gets a snapshot instead: a tombstone
would win over its later events). Keys where the mirror is ahead of its owner
are not touched: no event from the owner can lower a version, and the
owner's data needs looking at first.
"""

from __future__ import annotations

__all__ = ["RepairSummary", "repair"]

from dataclasses import dataclass, field

import sqlalchemy as sa

from replication.events import ChangeEvent, deleted
from replication.manifest import MirrorDeclaration
from replication.sync.reconcile import Drift, Reconciliation
from replication.sync.send import ConsumerQueue
from replication.sync.source import OwnerSource
from replication.sync.verify import subject_of
from replication.sync.where import bind_value

CHUNK = 500


@dataclass
class RepairSummary:
    """What a repair sent."""

    snapshots: int = 0
    tombstones: int = 0
    gone: int = 0
    """Keys the owner deleted between the reconcile and the repair (its own event follows)."""
    untouched: list[str] = field(default_factory=list)
    """Subjects left alone: the mirror is ahead of the owner, or holds a tombstone at or
    above the owner's version (no event of the owner's can change either)."""


def repair(
    result: Reconciliation,
    source: OwnerSource,
    declaration: MirrorDeclaration,
    owner: sa.Engine,
    queue: ConsumerQueue,
) -> RepairSummary:
    """Send what makes the mirror equal its owner again, for every drift in ``result``."""
    summary = RepairSummary()
    present = [
        d for d in result.drifts if d.kind in ("missing", "older", "differs") and not d.buried
    ]
    summary.untouched = [d.subject for d in result.drifts if d.kind == "ahead" or d.buried]
    for start in range(0, len(present), CHUNK):
        chunk = present[start : start + CHUNK]
        events = [source.snapshot(r) for r in source.rows_with_keys(owner, [d.key for d in chunk])]
        summary.gone += len(chunk) - len(events)
        summary.snapshots += queue.send(events)
    extras = [d for d in result.drifts if d.kind == "extra"]
    for start in range(0, len(extras), CHUNK):
        chunk = extras[start : start + CHUNK]
        still_there = _by_mirror_keys(source, declaration, owner, chunk)
        summary.snapshots += queue.send(list(still_there.values()))
        summary.tombstones += queue.send(
            [
                deleted(declaration.contract, d.key, (d.mirror_version or 0) + 1)
                for d in chunk
                if d.subject not in still_there
            ]
        )
    return summary


def _by_mirror_keys(
    source: OwnerSource, declaration: MirrorDeclaration, owner: sa.Engine, drifts: list[Drift]
) -> dict[str, ChangeEvent]:
    """Snapshots of the owner rows with the keys of ``drifts`` (as the mirror holds them)."""
    info = declaration.contract
    keys = source.keys()
    dialect = owner.dialect.name
    wanted = [
        tuple(
            bind_value(expr, spec.kind, value, dialect)
            for expr, spec, value in zip(keys, info.key_specs, d.key, strict=True)
        )
        for d in drifts
    ]
    events = [source.snapshot(row) for row in source.rows_with_keys(owner, wanted)]
    return {subject_of(info, event.key): event for event in events}
