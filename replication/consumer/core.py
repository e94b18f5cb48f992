"""A consumer applying one batch of SQS records to its mirrors.

For each record: find its mirror from the queue it came from, unwrap the SNS
envelope (checking the topic is the owner's), fetch an S3-offloaded payload,
decode and validate the change event, check it is the mirror's entity and
version. Records that can never apply are *poison*: they go to the queue's
DLQ at once with their reason. The rest are applied per mirror in one
transaction; if that transaction fails on a value the database refuses, the
batch is bisected until the culprit is alone, so every good record still
applies in this invocation. Transient failures (database down, deadlock, a
pending migration) are left for SQS to retry.
"""

from __future__ import annotations

__all__ = ["Consumer"]

import contextlib
import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from replication.consumer.classify import CONNECTION, DATA, Verdict, classify
from replication.consumer.dead_letters import DeadLetters
from replication.consumer.failures import Failure, record_failures
from replication.consumer.outcomes import Outcome, Status
from replication.consumer.records import Delivery, unwrap_body
from replication.consumer.routes import Route, routes_for
from replication.errors import InvalidEventError
from replication.events import ChangeEvent, decode_event
from replication.manifest import Manifest
from replication.mirror.apply import apply_changes, refresh_changes
from replication.mirror.decide import reduce_batch
from replication.mirror.statements import MirrorStatements
from replication.payloads import PAYLOAD_MAX_BYTES, owner_prefix, parse_pointer
from replication.topology.naming import DEFAULT_PREFIX


@dataclass
class _Item:
    delivery: Delivery
    route: Route
    event: ChangeEvent


@dataclass
class _Poison:
    delivery: Delivery
    route: Route
    reason: str
    event: ChangeEvent | None = None
    event_id: str | None = None


@dataclass
class _Transient:
    """A record left in its queue for SQS to deliver again."""

    delivery: Delivery
    route: Route | None
    reason: str
    event: ChangeEvent | None = None


@dataclass
class _Batch:
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    poison: list[_Poison] = field(default_factory=list)
    transient: list[_Transient] = field(default_factory=list)
    database_down: bool = False
    rehearse: bool = False
    """Roll back instead of committing, dead-letter nothing, record no failures."""

    def add(self, outcome: Outcome) -> None:
        """Record one record's outcome."""
        self.outcomes[outcome.message_id] = outcome


class Consumer:
    """Applies batches of SQS records to the mirrors of one consumer service."""

    def __init__(
        self,
        manifest: Manifest,
        *,
        connect: Callable[[], Any],
        dialect: str,
        statements: Mapping[str, MirrorStatements],
        dead_letters: DeadLetters,
        prefix: str = DEFAULT_PREFIX,
        s3_client: Callable[[], Any] | None = None,
        bulk: bool = True,
        clock: Callable[[], dt.datetime] | None = None,
        payload_bucket: str | None = None,
        payload_max_bytes: int = PAYLOAD_MAX_BYTES,
        owner_accounts: Mapping[str, str] | None = None,
    ) -> None:
        self.manifest = manifest
        self._owner_accounts = dict(owner_accounts or {})
        """The account of each owner whose topics live outside the queues' account."""
        self.routes = routes_for(manifest, prefix)
        self.dialect = dialect
        self.statements = dict(statements)
        missing = [r.declaration.table for r in self.routes.values() if r.entity not in statements]
        if missing:
            raise ValueError(f"no statements for mirror table(s) {', '.join(missing)}")
        self._connect = connect
        self._connection: Any = None
        self._dead_letters = dead_letters
        self._s3_client = s3_client
        self._payload_bucket = payload_bucket
        self._payload_max_bytes = payload_max_bytes
        self._bulk = bulk
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))

    # -- the connection, opened on first use and kept while warm ------------------------

    @property
    def connection(self) -> Any:
        """The database connection, opened on first use."""
        if self._connection is None:
            self._connection = self._connect()
        return self._connection

    def reset_connection(self) -> None:
        """Drop the connection (after it broke); the next use opens a new one."""
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):  # it is already broken
                connection.close()

    def close(self) -> None:
        """Close the connection."""
        self.reset_connection()

    # -- one batch -----------------------------------------------------------------------

    def process(self, deliveries: Sequence[Delivery], *, rehearse: bool = False) -> list[Outcome]:
        """Apply ``deliveries``; one outcome per delivery, in order.

        With ``rehearse``, nothing changes anywhere: each transaction is rolled back
        instead of committed and poison is not sent, so the outcomes say what applying
        the records would do now (a DLQ replay's dry run).
        """
        batch = _Batch(rehearse=rehearse)
        groups: dict[str, list[_Item]] = {}
        held: dict[tuple[str, str | None], str] = {}
        for delivery in deliveries:
            route = self.routes.get(delivery.queue_name)
            if route is None:
                known = ", ".join(sorted(self.routes)) or "none"
                reason = (
                    f"queue {delivery.queue_name} is not one of service "
                    f"{self.manifest.service}'s queues ({known}): check the event source "
                    "mapping and REPLICATION_PREFIX"
                )
                batch.transient.append(_Transient(delivery, None, reason))
                continue
            group = (route.queue, delivery.group_id) if route.declaration.fifo else None
            if group is not None and group in held:
                # FIFO: a later record of a message group waits for the earlier one.
                batch.transient.append(_Transient(delivery, route, held[group]))
                continue
            failed_before = len(batch.transient)
            item = self._prepare(delivery, route, batch)
            if item is not None:
                groups.setdefault(route.queue, []).append(item)
            elif group is not None and len(batch.transient) > failed_before:
                held[group] = (
                    f"held: an earlier record of message group {delivery.group_id} "
                    f"({delivery.message_id}) failed and will be retried first"
                )
        for queue, items in groups.items():
            self._apply_group(self.routes[queue], items, batch)
        self._dead_letter(batch)
        self._record_failures(batch)
        return [batch.outcomes[d.message_id] for d in deliveries]

    def _prepare(self, delivery: Delivery, route: Route, batch: _Batch) -> _Item | None:
        """The record's event, or None after recording it as poison or transient."""
        try:
            envelope = unwrap_body(delivery.body)
            if envelope.topic_arn is not None:
                expected = self._topic_arn(delivery, route)
                if envelope.topic_arn != expected:
                    raise InvalidEventError(
                        f"spoofed or misrouted: published on topic {envelope.topic_arn[:300]!r}, "
                        f"but {route.entity} v{route.declaration.contract.version} is published "
                        f"by {route.declaration.contract.owner} on {expected!r}"
                    )
            message = envelope.message
            pointer = parse_pointer(message)
            if pointer is not None:
                message = self._fetch(pointer, owner_prefix(route.declaration.contract.owner))
            event = decode_event(message, fields=route.declaration.fields)
        except InvalidEventError as exc:
            batch.poison.append(_Poison(delivery, route, str(exc), event_id=exc.event_id))
            return None
        except _FetchError as exc:
            batch.transient.append(_Transient(delivery, route, str(exc)))
            return None
        except MemoryError:
            batch.transient.append(_Transient(delivery, route, "out of memory while decoding"))
            return None
        except Exception as exc:
            # Nothing in one record's content may fail the batch: whatever decoding it
            # raised is that record's outcome, dead-lettered with the reason.
            reason = f"could not be decoded: {type(exc).__name__}: {str(exc)[:200]}"
            batch.poison.append(_Poison(delivery, route, reason))
            return None
        info = route.declaration.contract
        if (event.entity, event.contract.version) != (info.entity, info.version):
            reason = (
                f"event {event.id}: a {event.contract.label} event arrived on the queue of "
                f"{info.label} ({route.queue}); spoofed or misrouted"
            )
            batch.poison.append(_Poison(delivery, route, reason, event=event))
            return None
        return _Item(delivery, route, event)

    def _topic_arn(self, delivery: Delivery, route: Route) -> str:
        """The ARN of the owner's topic: in the queue's partition and region, in the owner's
        account (``owner_accounts``), else in the queue's own account."""
        parts = delivery.queue_arn.split(":")
        partition, region = (parts[1], parts[3]) if len(parts) == 6 else ("aws", "")
        owner = route.declaration.contract.owner
        account = self._owner_accounts.get(owner) or delivery.account
        return f"arn:{partition}:sns:{region}:{account}:{route.topic}"

    def _fetch(self, pointer: tuple[str, str], prefix: str) -> str:
        """The payload a pointer names, read only from the configured bucket and the
        owner's prefix: a message must not make the consumer read, with its credentials,
        whatever object it names."""
        bucket, key = pointer
        if self._payload_bucket is None:
            raise InvalidEventError(
                "an offloaded payload, but this consumer reads none: no payload bucket is "
                "configured (REPLICATION_PAYLOAD_BUCKET)"
            )
        if bucket != self._payload_bucket or not key.startswith(prefix):
            # Not read, and the reason says nothing of whether such an object exists.
            raise InvalidEventError(
                f"an offloaded payload outside s3://{self._payload_bucket}/{prefix}: not read "
                "(a consumer reads its owner's payloads only)"
            )
        if self._s3_client is None:
            raise InvalidEventError(
                f"payload offloaded to s3://{bucket}/{key}, but this consumer has no S3 access "
                "configured"
            )
        try:
            response = self._s3_client().get_object(Bucket=bucket, Key=key)
            size = int(response.get("ContentLength") or 0)
            data: bytes = (
                b""
                if size > self._payload_max_bytes
                else response["Body"].read(self._payload_max_bytes + 1)
            )
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code in ("NoSuchKey", "NoSuchBucket", "404"):
                raise InvalidEventError(
                    f"offloaded payload s3://{bucket}/{key} does not exist ({code})"
                ) from None
            raise _FetchError(f"cannot read offloaded payload s3://{bucket}/{key}: {exc}") from exc
        if size > self._payload_max_bytes or len(data) > self._payload_max_bytes:
            raise InvalidEventError(
                f"offloaded payload s3://{bucket}/{key} is over the {self._payload_max_bytes} "
                "bytes this consumer reads (REPLICATION_PAYLOAD_MAX_BYTES)"
            )
        try:
            return data.decode()
        except UnicodeDecodeError:
            raise InvalidEventError(
                f"offloaded payload s3://{bucket}/{key} is not UTF-8 text"
            ) from None

    # -- applying, with isolation of the culprit -----------------------------------------

    def _apply_group(self, route: Route, items: list[_Item], batch: _Batch) -> None:
        verdict = self._try_apply(route, items, batch)
        if verdict is None:
            return
        if verdict.kind == CONNECTION:
            # A fresh connection usually succeeds: the backend was restarted or killed.
            self.reset_connection()
            verdict = self._try_apply(route, items, batch)
            if verdict is None:
                return
            if verdict.kind == CONNECTION:
                self.reset_connection()
                batch.database_down = True
        if verdict.kind != DATA:
            for item in items:
                batch.transient.append(_Transient(item.delivery, route, verdict.reason, item.event))
            return
        if len(items) == 1:
            item = items[0]
            batch.poison.append(_Poison(item.delivery, route, verdict.reason, event=item.event))
            return
        middle = len(items) // 2
        self._apply_group(route, items[:middle], batch)
        self._apply_group(route, items[middle:], batch)

    def _try_apply(self, route: Route, items: list[_Item], batch: _Batch) -> Verdict | None:
        """Apply ``items`` in one transaction; None on success, else the verdict on the error."""
        events = [item.event for item in items]
        try:
            connection = self.connection
            statements = self.statements[route.entity]
            result = apply_changes(connection, statements, events, bulk=self._bulk)
            refresh = [
                item.event
                for item in items
                if item.delivery.refresh and item.event.id_text not in result.written
            ]
            if refresh:  # snapshots sent by a backfill or a repair: equal versions too
                refreshed = refresh_changes(connection, statements, refresh)
                result = dataclasses.replace(result, written=result.written | refreshed)
            if batch.rehearse:
                connection.rollback()
            else:
                connection.commit()
        except Exception as exc:
            verdict = classify(exc, route.declaration.service)
            if verdict.kind != CONNECTION:
                self._rollback()
            return verdict
        now = self._clock()
        # Which events the apply kept: all of them unless it collapsed some (then reduce
        # again to know which, rather than make every batch pay for it).
        kept = {id(e) for e in reduce_batch(events)} if result.collapsed else None
        for item in items:
            event = item.event
            event_id = event.id_text
            lag = (now - event.time).total_seconds() * 1000
            status: Status
            if kept is not None and id(event) not in kept:
                status = "collapsed"
            elif event_id in result.written:
                status = "deleted" if event.data is None else "applied"
            else:
                status = "stale"
            batch.add(_outcome(item.delivery, status, "", route, event, event_id, lag_ms=lag))
        return None

    # -- poison and transient failures ---------------------------------------------------

    def _dead_letter(self, batch: _Batch) -> None:
        if not batch.poison:
            return
        sent = (
            {}
            if batch.rehearse
            else self._dead_letters.send([(p.delivery, p.route, p.reason) for p in batch.poison])
        )
        for poison in batch.poison:
            problem = sent.get(poison.delivery.message_id)
            status: Status = "dead-lettered"
            reason = poison.reason
            if problem is not None:
                # Not in the DLQ: keep it in the queue; SQS retries and redrives it.
                status = "retry"
                reason = f"{reason} (and sending it to the DLQ failed: {problem})"
            batch.add(
                _outcome(
                    poison.delivery, status, reason, poison.route, poison.event, poison.event_id
                )
            )

    def _record_failures(self, batch: _Batch) -> None:
        for transient in batch.transient:
            batch.add(
                _outcome(
                    transient.delivery, "retry", transient.reason, transient.route, transient.event
                )
            )
        by_id = {t.delivery.message_id: t.delivery for t in batch.transient} | {
            p.delivery.message_id: p.delivery for p in batch.poison
        }
        failures = [
            Failure(
                queue=by_id[o.message_id].queue_name,
                message_id=o.message_id,
                kind="permanent" if o.status == "dead-lettered" else "transient",
                reason=o.reason,
                receive_count=by_id[o.message_id].receive_count,
                dead_lettered=o.status == "dead-lettered",
                entity=o.entity,
                subject=o.subject,
                event_id=o.event_id,
            )
            for o in batch.outcomes.values()
            if o.message_id in by_id
        ]
        if not failures or batch.database_down or batch.rehearse:
            return
        try:
            record_failures(self.connection, self.dialect, failures, now=self._clock())
            self.connection.commit()
        except Exception:
            # The DLQ message carries the reason too; a database that is down must not
            # turn a dead-lettered record into a retried one.
            self._rollback()

    def _rollback(self) -> None:
        """Roll the open transaction back; a connection that cannot is dropped."""
        if self._connection is None:
            return
        try:
            self._connection.rollback()
        except Exception:
            self.reset_connection()


def _outcome(
    delivery: Delivery,
    status: Status,
    reason: str,
    route: Route | None,
    event: ChangeEvent | None,
    event_id: str | None = None,
    *,
    lag_ms: float | None = None,
) -> Outcome:
    """The outcome of ``delivery``: what is known of its event, where it is known."""
    return Outcome(
        delivery.message_id,
        status,
        reason,
        entity=route.entity if route is not None else None,
        subject=event.subject if event is not None else None,
        event_id=event.id_text if event_id is None and event is not None else event_id,
        lag_ms=lag_ms,
    )


class _FetchError(Exception):
    """An offloaded payload could not be read for now."""
