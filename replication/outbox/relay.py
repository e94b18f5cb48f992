"""The relay: gets every outbox row onto its topic at least once, in per-key order.

One cycle (:meth:`Relay.relay_once`) is one small transaction:

1. claim up to ``batch_size`` unpublished rows that are due, in id order,
   with ``FOR UPDATE SKIP LOCKED`` where the database has it, so several
   relays share the work; only rows with no earlier unpublished row of the
   same key are claimed (nothing of another relay, in back-off or failed
   before them), so an older version is never published after a newer one
   and a stuck key never fills the claim;
2. publish with ``PublishBatch`` (at most 10 entries and 256 KiB a call, a
   key at most once a call); an entry SNS reports as failed stays
   unpublished with a back-off, and later rows of its key wait for it;
3. mark what was published and commit.

Events carry the whole state of their key, so a version with a newer version of
its key already waiting is of no use to any mirror. Superseding (on unless an
owned entity says ``supersede: false`` in its manifest) publishes, for each key
and major version whose head is claimed, only the newest unpublished row and
marks the older ones published and ``superseded``: a relay that
is behind (after an outage, or an owner's bulk update) sends one message per
key instead of one per version, and never an older version after a newer.

A crash between publishing and marking republishes those rows: consumers
absorb the duplicates (ARCHITECTURE section 4, rule 5).
"""

from __future__ import annotations

__all__ = ["Relay", "RelayConfig", "RelayStats", "TopicRoute", "TopicRouter"]

import datetime as dt
import random
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import sqlalchemy as sa

from replication.dialects import dialect_named
from replication.outbox.batching import ClaimedRow, batches, group_id, waves
from replication.outbox.publisher import (
    OutgoingMessage,
    Publisher,
    PublishError,
    PublishResult,
)
from replication.outbox.routing import TopicRoute, TopicRouter
from replication.outbox.table import outbox_table
from replication.payloads import EXTENDED_SIZE_ATTRIBUTE, SNS_MAX_BYTES, PayloadStore


@dataclass(frozen=True)
class RelayConfig:
    """How a relay claims, retries and cleans up."""

    batch_size: int = 200
    """Rows claimed per transaction."""
    backoff_base: float = 1.0
    """Seconds before the first retry of a failed row; doubles per attempt."""
    backoff_max: float = 300.0
    publish_concurrency: int = 4
    """PublishBatch calls in flight at once (only ever for distinct keys)."""
    retention: dt.timedelta = dt.timedelta(days=7)
    """How long published rows are kept before :meth:`Relay.purge_published` removes them."""
    supersede: bool = True
    """Publish only the newest waiting version of a key (routes may turn it off per entity)."""


@dataclass
class RelayStats:
    """What relay cycles did."""

    claimed: int = 0
    published: int = 0
    superseded: int = 0
    """Rows not published because a newer version of their key was (marked ``superseded``)."""
    failed: int = 0
    offloaded: int = 0
    throttled: int = 0
    cycles: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, other: RelayStats) -> None:
        """Accumulate another cycle's figures."""
        self.claimed += other.claimed
        self.published += other.published
        self.superseded += other.superseded
        self.failed += other.failed
        self.offloaded += other.offloaded
        self.throttled += other.throttled
        self.cycles += other.cycles
        self.errors = (self.errors + other.errors)[-20:]


class Relay:
    """Publishes an owner's outbox rows to their topics."""

    def __init__(
        self,
        engine: sa.Engine,
        publisher: Publisher,
        router: TopicRouter,
        *,
        payloads: PayloadStore | None = None,
        config: RelayConfig | None = None,
        table: sa.Table | None = None,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.engine = engine
        self.publisher = publisher
        self.router = router
        self.payloads = payloads
        self.config = config or RelayConfig()
        self.table = table if table is not None else outbox_table()
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        database = dialect_named(engine.dialect.name)
        self._naive = not database.aware_timestamps
        self._skip_locked = database.skip_locked
        self._pool: ThreadPoolExecutor | None = None
        self._marks_superseded: bool | None = None

    def _db_time(self, when: dt.datetime) -> dt.datetime:
        # MySQL and SQLite columns hold UTC without an offset.
        return when.astimezone(dt.UTC).replace(tzinfo=None) if self._naive else when

    def relay_once(self) -> RelayStats:
        """One claim, publish and mark cycle in one transaction."""
        stats = RelayStats(cycles=1)
        now = self._clock()
        with self._transaction() as conn:
            rows = self._claim(conn, now)
            stats.claimed = len(rows)
            if not rows:
                return stats
            rows, superseded = self._supersede(conn, rows)
            published, failures = self._publish(rows, stats)
            stats.published = len(published)
            stats.superseded = len(superseded)
            stats.failed = len(failures)
            self._mark(conn, published, failures, now)
            self._mark_superseded(conn, superseded, now)
        return stats

    @contextmanager
    def _transaction(self) -> Iterator[sa.Connection]:
        # READ COMMITTED: InnoDB's default REPEATABLE READ would take gap locks on
        # the claimed range and deadlock with owners inserting new outbox rows.
        with self.engine.connect() as conn:
            if self._skip_locked:
                conn = conn.execution_options(isolation_level="READ COMMITTED")
            with conn.begin():
                yield conn

    def drain(self, *, should_stop: Callable[[], bool] = lambda: False) -> RelayStats:
        """Run cycles until nothing due is left to publish, or ``should_stop()``."""
        total = RelayStats()
        while not should_stop():
            stats = self.relay_once()
            total.add(stats)
            if stats.published == 0 and stats.superseded == 0:
                break
            if stats.throttled:
                time.sleep(min(self.config.backoff_max, self.config.backoff_base))
        return total

    def pending(self) -> int:
        """How many rows are not published yet."""
        t = self.table
        with self.engine.connect() as conn:
            count = conn.execute(
                sa.select(sa.func.count()).select_from(t).where(t.c.published_at.is_(None))
            ).scalar_one()
        return int(count)

    def backlog(self) -> tuple[int, float]:
        """Unpublished rows, and the age in seconds of the oldest of them (0 when none)."""
        t = self.table
        with self.engine.connect() as conn:
            count, oldest = conn.execute(
                sa.select(sa.func.count(), sa.func.min(t.c.created_at)).where(
                    t.c.published_at.is_(None)
                )
            ).one()
        if not count or oldest is None:
            return 0, 0.0
        if isinstance(oldest, str):  # SQLite keeps timestamps as text
            oldest = dt.datetime.fromisoformat(oldest)
        if oldest.tzinfo is None:  # MySQL and SQLite columns hold UTC without an offset
            oldest = oldest.replace(tzinfo=dt.UTC)
        return int(count), max(0.0, (self._clock() - oldest).total_seconds())

    def purge_published(self) -> int:
        """Delete rows published longer ago than the retention; returns how many."""
        t = self.table
        cutoff = self._db_time(self._clock() - self.config.retention)
        total = 0
        while True:
            # Small transactions in READ COMMITTED: a long purge must not block owners.
            with self._transaction() as conn:
                ids = list(
                    conn.execute(
                        sa.select(t.c.id)
                        .where(t.c.published_at.is_not(None), t.c.published_at < cutoff)
                        .order_by(t.c.id)
                        .limit(1000)
                    ).scalars()
                )
                if ids:
                    conn.execute(sa.delete(t).where(t.c.id.in_(ids)))
            total += len(ids)
            if len(ids) < 1000:
                return total

    # -- one cycle ---------------------------------------------------------------------

    def _claim(self, conn: sa.Connection, now: dt.datetime) -> list[ClaimedRow]:
        t = self.table
        earlier = t.alias("earlier")
        # Only the head of each key's unpublished rows: a key held back by a failed
        # or locked row must not fill the claim and starve every other key.
        blocked = (
            sa.select(earlier.c.id)
            .where(
                earlier.c.entity == t.c.entity,
                earlier.c.subject == t.c.subject,
                earlier.c.published_at.is_(None),
                earlier.c.id < t.c.id,
            )
            .exists()
        )
        query = (
            self._select_claimed()
            .where(t.c.published_at.is_(None))
            .where(sa.or_(t.c.next_attempt_at.is_(None), t.c.next_attempt_at <= self._db_time(now)))
            .where(~blocked)
            .order_by(t.c.id)
            .limit(self.config.batch_size)
        )
        if self._skip_locked:
            query = query.with_for_update(skip_locked=True)
        return [ClaimedRow(*row) for row in conn.execute(query)]

    def _supersede(
        self, conn: sa.Connection, heads: list[ClaimedRow]
    ) -> tuple[list[ClaimedRow], set[int]]:
        """The rows to publish in place of ``heads``: per key and major version, the newest
        waiting row; and the ids of the older rows they supersede."""
        keys = sorted(
            {row.key for row in heads if self._supersedes(row.entity, row.contract_version)}
        )
        if not keys:
            return heads, set()
        t = self.table
        waiting: dict[tuple[str, str, int], list[int]] = {}
        for chunk in _chunks(keys, 500):
            query = (
                sa.select(t.c.id, t.c.entity, t.c.subject, t.c.contract_version)
                .where(self._waiting_of(chunk))
                .order_by(t.c.id)
            )
            for row_id, entity, subject, version in conn.execute(query):
                waiting.setdefault((entity, subject, version), []).append(row_id)
        groups = [
            ids
            for (entity, _, version), ids in waiting.items()
            if len(ids) > 1 and self._supersedes(entity, version)
        ]
        locked = self._lock(conn, keys) if groups else None
        superseded: set[int] = set()
        newest: set[int] = set()
        for ids in groups:
            if locked is not None and not locked.issuperset(ids):
                continue  # a row another transaction holds: its head goes alone this cycle
            newest.add(ids[-1])
            superseded.update(ids[:-1])
        kept = [row for row in heads if row.id not in superseded]
        missing = sorted(newest - {row.id for row in kept})
        for some in _chunks(missing, 5000):
            kept += self._rows(conn, some)
        kept.sort(key=lambda row: row.id)
        return kept, superseded

    def _supersedes(self, entity: str, version: int) -> bool:
        """Whether this relay supersedes the rows of an entity version (else one by one, or
        failed as unroutable)."""
        if not self.config.supersede:
            return False
        route = self.router.route(entity, version)
        return route is not None and route.supersede

    def _lock(self, conn: sa.Connection, keys: list[tuple[str, str]]) -> set[int] | None:
        """The waiting rows of ``keys`` this transaction now holds (None where nothing
        locks rows).

        Another relay never claims a row of a key whose head is held here, yet InnoDB
        leaves a claim's locks on rows it scanned and filtered out: taking those rows
        with a plain lock could deadlock two relays. Rows found locked are left alone.
        """
        if not self._skip_locked:
            return None
        t = self.table
        held: set[int] = set()
        for chunk in _chunks(keys, 500):
            query = (
                sa.select(t.c.id).where(self._waiting_of(chunk)).with_for_update(skip_locked=True)
            )
            held.update(conn.execute(query).scalars())
        return held

    def _waiting_of(self, keys: Sequence[tuple[str, str]]) -> sa.ColumnElement[bool]:
        """The unpublished rows of ``keys``."""
        t = self.table
        return sa.and_(
            t.c.published_at.is_(None), sa.tuple_(t.c.entity, t.c.subject).in_(list(keys))
        )

    def _rows(self, conn: sa.Connection, ids: Sequence[int]) -> list[ClaimedRow]:
        return [ClaimedRow(*row) for row in conn.execute(self._select_claimed().where(_id_in(ids)))]

    def _select_claimed(self) -> sa.Select[Any]:
        """The columns of a :class:`ClaimedRow`, in its order."""
        t = self.table
        return sa.select(
            t.c.id,
            t.c.event_id,
            t.c.entity,
            t.c.contract_version,
            t.c.op,
            t.c.subject,
            t.c.payload,
            t.c.attempts,
        )

    def _message(self, row: ClaimedRow, fifo: bool, stats: RelayStats) -> OutgoingMessage:
        attributes = {
            "entity": row.entity,
            "op": row.op,
            "contract_version": str(row.contract_version),
        }
        message = OutgoingMessage(
            id=str(row.id),
            body=row.payload,
            attributes=attributes,
            group_id=group_id(row.subject) if fifo else None,
            deduplication_id=row.event_id if fifo else None,
        )
        if message.size() <= SNS_MAX_BYTES:
            return message
        if self.payloads is None:
            raise _UnpublishableRowError(
                f"encoded event is {message.size()} bytes, over the SNS limit of "
                f"{SNS_MAX_BYTES}, and no S3 bucket is configured for large payloads"
            )
        pointer = self.payloads.offload(row.event_id, row.payload)
        stats.offloaded += 1
        return OutgoingMessage(
            id=message.id,
            body=pointer,
            attributes=attributes,
            group_id=message.group_id,
            deduplication_id=message.deduplication_id,
            number_attributes={EXTENDED_SIZE_ATTRIBUTE: len(row.payload.encode())},
        )

    def _publish(
        self, rows: list[ClaimedRow], stats: RelayStats
    ) -> tuple[list[int], dict[int, tuple[int, str]]]:
        published: list[int] = []
        failures: dict[int, tuple[int, str]] = {}
        failed_keys: set[tuple[str, str]] = set()
        by_topic: dict[str, list[tuple[ClaimedRow, OutgoingMessage]]] = {}
        for row in rows:
            if row.key in failed_keys:
                continue  # an earlier row of this key failed: keep the order
            route = self.router.route(row.entity, row.contract_version)
            if route is None:
                failures[row.id] = (
                    row.attempts,
                    f"no topic for {row.entity} v{row.contract_version}",
                )
                failed_keys.add(row.key)
                continue
            try:
                message = self._message(row, route.fifo, stats)
            except _UnpublishableRowError as exc:
                failures[row.id] = (row.attempts, str(exc))
                failed_keys.add(row.key)
                continue
            except Exception as exc:  # S3 unreachable: retry the row later
                failures[row.id] = (row.attempts, f"offloading to S3 failed: {exc}")
                failed_keys.add(row.key)
                continue
            by_topic.setdefault(route.topic_arn, []).append((row, message))
        calls = [(arn, batch) for arn, items in by_topic.items() for batch in batches(items)]
        for wave in waves(calls):
            wave = [
                (arn, [(r, m) for r, m in batch if r.key not in failed_keys]) for arn, batch in wave
            ]
            wave = [(arn, batch) for arn, batch in wave if batch]
            outcomes = self._send(wave)
            throttled = False
            for (_, batch), outcome in zip(wave, outcomes, strict=True):
                if isinstance(outcome, PublishError):
                    for row, _ in batch:
                        failures[row.id] = (row.attempts, str(outcome))
                        failed_keys.add(row.key)
                    stats.errors.append(str(outcome))
                    throttled = throttled or outcome.throttled
                    continue
                for row, message in batch:
                    reason = outcome.failed.get(message.id)
                    if reason is None:
                        published.append(row.id)
                    else:
                        failures[row.id] = (row.attempts, reason)
                        failed_keys.add(row.key)
            if throttled:
                stats.throttled += 1
                break  # slow down: stop this cycle
        return published, failures

    def _send(
        self, wave: list[tuple[str, list[tuple[ClaimedRow, OutgoingMessage]]]]
    ) -> list[PublishResult | PublishError]:
        """Publish one wave's calls, several at once (no key appears twice in a wave)."""

        def call(
            arn: str, batch: list[tuple[ClaimedRow, OutgoingMessage]]
        ) -> PublishResult | PublishError:
            try:
                return self.publisher.publish_batch(arn, [m for _, m in batch])
            except PublishError as exc:
                return exc

        if len(wave) <= 1 or self.config.publish_concurrency <= 1:
            return [call(arn, batch) for arn, batch in wave]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                self.config.publish_concurrency, thread_name_prefix="relay-publish"
            )
        futures = [self._pool.submit(call, arn, batch) for arn, batch in wave]
        return [future.result() for future in futures]

    def _mark(
        self,
        conn: sa.Connection,
        published: list[int],
        failures: dict[int, tuple[int, str]],
        now: dt.datetime,
    ) -> None:
        t = self.table
        stamp = self._db_time(now)
        for chunk in _chunks(published, 5000):
            conn.execute(sa.update(t).where(_id_in(chunk)).values(published_at=stamp))
        if failures:
            conn.execute(
                sa.update(t)
                .where(t.c.id == sa.bindparam("row_id"))
                .values(
                    attempts=t.c.attempts + 1,
                    next_attempt_at=sa.bindparam("retry_at"),
                    last_error=sa.bindparam("error"),
                ),
                [
                    {
                        "row_id": row_id,
                        "retry_at": self._db_time(now + self._backoff(attempts)),
                        "error": error[:2000],
                    }
                    for row_id, (attempts, error) in failures.items()
                ],
            )

    def _mark_superseded(self, conn: sa.Connection, superseded: set[int], now: dt.datetime) -> None:
        if not superseded:
            return
        t = self.table
        values: dict[str, Any] = {"published_at": self._db_time(now)}
        if self._has_superseded(conn):
            values["superseded"] = True
        for ids in _chunks(sorted(superseded), 5000):
            conn.execute(sa.update(t).where(_id_in(ids)).values(**values))

    def _has_superseded(self, conn: sa.Connection) -> bool:
        """Whether the outbox has the ``superseded`` column (an outbox made before it existed
        has not until its migration adds it; its superseded rows are marked published only)."""
        if self._marks_superseded is None:
            columns = {c["name"] for c in sa.inspect(conn).get_columns(self.table.name)}
            self._marks_superseded = "superseded" in columns and "superseded" in self.table.c
        return self._marks_superseded

    def _backoff(self, attempts: int) -> dt.timedelta:
        delay = min(self.config.backoff_max, self.config.backoff_base * 2**attempts)
        return dt.timedelta(seconds=delay * random.uniform(0.5, 1.0))  # noqa: S311


_T = TypeVar("_T")


def _chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _id_in(ids: Sequence[int]) -> sa.TextClause:
    """``id IN (...)`` with the ids written out: they are integers read from the table, and
    thousands of bound parameters cost more to render than the statement to run."""
    return sa.text(f"id IN ({','.join(str(int(i)) for i in ids)})")


class _UnpublishableRowError(Exception):
    """A row that cannot be published as it is."""
