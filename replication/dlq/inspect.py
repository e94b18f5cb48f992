"""Which DLQs a service has, and what is in them (read without consuming)."""

from __future__ import annotations

__all__ = [
    "DlqSummary",
    "FailureLookup",
    "Inspector",
    "Target",
    "summarise",
    "targets",
]

import contextlib
import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from replication.contracts import ContractInfo
from replication.dlq.messages import (
    DeadLetter,
    Described,
    FailureRecord,
    Selection,
    describe,
    reason_summary,
)
from replication.dlq.queues import Queues, Scan
from replication.errors import ConfigurationError
from replication.manifest import Manifest
from replication.topology.model import build_topology


@dataclass(frozen=True)
class Target:
    """One consumer queue and its DLQ."""

    service: str
    queue: str
    dlq: str
    info: ContractInfo
    fifo: bool
    fields: tuple[str, ...] = ()
    """The fields the consumer mirrors: events are read as it reads them."""

    @property
    def entity(self) -> str:
        """The mirrored entity."""
        return self.info.entity


def targets(
    manifests: Sequence[Manifest],
    prefix: str,
    *,
    service: str | None = None,
    entity: str | None = None,
) -> list[Target]:
    """The DLQs of ``service`` (every consumer when None), optionally of one entity."""
    consumers = {m.service: m for m in manifests if m.mirrors}
    if service is not None and service not in consumers:
        known = ", ".join(sorted(consumers)) or "none"
        owners = {m.service for m in manifests}
        why = "mirrors nothing, so it has no DLQ" if service in owners else "is not declared"
        raise ConfigurationError(f"service {service!r} {why} (services with DLQs: {known})")
    topology = build_topology(manifests, prefix=prefix)
    found = []
    for spec in topology.queues:
        if service is not None and spec.consumer != service:
            continue
        manifest = consumers[spec.consumer]
        declaration = next(
            d
            for d in manifest.mirrors
            if (d.contract.entity, d.contract.version) == (spec.entity, spec.version)
        )
        found.append(
            Target(
                spec.consumer,
                spec.name,
                spec.dlq,
                declaration.contract,
                spec.fifo,
                declaration.fields,
            )
        )
    if entity is not None:
        chosen = [t for t in found if entity in (t.entity, t.info.label)]
        if not chosen:
            known = ", ".join(sorted({t.info.label for t in found})) or "none"
            raise ConfigurationError(f"no DLQ for entity {entity!r} (mirrored: {known})")
        found = chosen
    return found


FailureLookup = Callable[[str, Sequence[str]], dict[str, FailureRecord]]
"""``(source queue, message ids)`` -> what the failures table says about them."""


def database_lookup(connect: Callable[[], Any], dialect: str) -> FailureLookup:
    """A lookup in the consumer's failures table, over one connection opened on first use."""
    from replication.consumer.failures import read_failures

    state: dict[str, Any] = {}

    def lookup(queue: str, message_ids: Sequence[str]) -> dict[str, FailureRecord]:
        if "connection" not in state:
            state["connection"] = connect()
        connection = state["connection"]
        try:
            rows = read_failures(connection, dialect, queue, message_ids)
        finally:
            with contextlib.suppress(Exception):
                connection.rollback()
        return {k: FailureRecord(*v) for k, v in rows.items()}

    return lookup


class Inspector:
    """Reads DLQs and describes their messages."""

    def __init__(self, queues: Queues, lookup: FailureLookup | None = None) -> None:
        self.queues = queues
        self._lookup = lookup
        self.lookup_problem: str | None = None
        """Why the failures table could not be read, if it could not."""

    def describe(self, target: Target, letters: Iterable[DeadLetter]) -> list[Described]:
        """Each letter read out, reasons for SQS-moved ones from the failures table."""
        letters = list(letters)
        records: dict[str, FailureRecord] = {}
        # A reason its sender set on a message SQS moved explains nothing: look it up too.
        unexplained = [m.source_message_id for m in letters if m.consumer_reason is None]
        if unexplained and self._lookup is not None and self.lookup_problem is None:
            try:
                records = self._lookup(target.queue, unexplained)
            except Exception as exc:
                self.lookup_problem = f"cannot read the consumer's failures table: {exc}"
        return [
            describe(m, target.queue, target.info, records.get(m.source_message_id), target.fields)
            for m in letters
        ]

    def selector(
        self,
        target: Target,
        selection: Selection,
        *,
        keep: dict[str, Described] | None = None,
    ) -> Callable[[DeadLetter], bool]:
        """Whether ``selection`` selects a message of ``target``'s DLQ (for move_messages).

        With ``keep``, each description is kept by message id, for a hand-over that
        needs it again.
        """

        def select(letter: DeadLetter) -> bool:
            [item] = self.describe(target, [letter])
            if keep is not None:
                keep[letter.message_id] = item
            return selection.matches(item)

        return select

    def read(self, target: Target, *, limit: int | None = None) -> tuple[Scan, list[Described]]:
        """The DLQ's messages (made visible again after reading), described."""
        scan = self.queues.scan(target.dlq, limit=limit)
        return scan, self.describe(target, scan.letters)


@dataclass(frozen=True)
class DlqSummary:
    """What ``dlq list`` shows for one DLQ."""

    target: Target
    depth: int
    in_flight: int
    read: int
    complete: bool
    oldest: dt.datetime | None
    reasons: tuple[tuple[str, str, int], ...]
    """``(kind, reason summary, count)``, most frequent first."""
    sender_reasons: int = 0
    """How many carry a ``replication.reason`` their sender set (SQS moved them): not counted
    among the reasons."""

    def as_dict(self, now: dt.datetime) -> dict[str, Any]:
        """JSON-ready form."""
        age = (now - self.oldest).total_seconds() if self.oldest else None
        return {
            "service": self.target.service,
            "dlq": self.target.dlq,
            "source_queue": self.target.queue,
            "entity": self.target.info.label,
            "depth": self.depth,
            "in_flight": self.in_flight,
            "read": self.read,
            "complete": self.complete,
            "oldest": self.oldest.isoformat() if self.oldest else None,
            "oldest_age_seconds": round(age, 1) if age is not None else None,
            "reasons": [{"kind": k, "reason": r, "count": c} for k, r, c in self.reasons],
            "sender_reasons": self.sender_reasons,
        }


def summarise(target: Target, scan: Scan, described: Sequence[Described]) -> DlqSummary:
    """Depth, oldest message and reasons of one DLQ."""
    times = [t for t in (d.letter.sent_at for d in described) if t is not None]
    counts = Counter((d.kind, reason_summary(d.reason)) for d in described)
    reasons = tuple(
        (kind, reason, count)
        for (kind, reason), count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    )
    return DlqSummary(
        target,
        depth=scan.depth.visible + scan.depth.delayed,
        in_flight=scan.depth.in_flight,
        read=len(described),
        complete=scan.complete,
        oldest=min(times) if times else None,
        reasons=reasons,
        sender_reasons=sum(1 for d in described if d.sender_reason is not None),
    )
