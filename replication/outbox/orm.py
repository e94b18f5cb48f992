"""ORM integration: flushed inserts, updates and deletes write their outbox rows.

Owners declare once that an ORM model maps to a contract; from then on every
flush, in any session, writes in the same transaction one change event per row
of that model that the flush inserted, updated or deleted::

    tracker = OutboxTracker()
    tracker.track(ProductRow, Product, to_contract=lambda row: Product(...))

Events come from SQLAlchemy's mapper events, so they describe exactly the SQL
the flush ran: an update with no net change writes nothing, a delete and
re-add of one key in one flush (a "row switch") is one update, and a change of
a key field writes a delete of the old key and an upsert of the new one.

The per-key version is the model's ``version_id_col`` (or a named attribute
the owner increments). A delete is published at the row's version plus one,
since SQLAlchemy does not bump the counter on delete. A key deleted and
inserted again (later, or in the same flush, which SQLAlchemy turns into an
update) must continue above the deleted row's version: a new row starting at
1 would be stale for consumers, who keep the tombstone. Use soft deletes, or
set the version of the re-created row.

Refused, with :class:`UnpublishableChangeError`, so that no change commits
without its event: a row whose contract validation fails, two different
states of one key at one version in one transaction, and bulk
``update()``/``delete()``/``insert()`` statements on a tracked model, which
bypass the flush (``Session.bulk_save_objects`` and the other legacy bulk
methods bypass it too and must not be used on tracked models).
"""

from __future__ import annotations

__all__ = ["OutboxTracker", "UnpublishableChangeError"]

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy import event
from sqlalchemy.orm import Mapper, ORMExecuteState, Session, UOWTransaction, object_session
from sqlalchemy.orm.attributes import instance_state

from replication.contracts import Contract, ContractInfo
from replication.conversions import with_older_versions
from replication.errors import ReplicationError
from replication.events import ChangeEvent, deleted, describe_validation_error, upserted
from replication.outbox.record import insert_rows, outbox_row
from replication.outbox.table import outbox_table

_PENDING = "replication.outbox.pending"
_EMITTED = "replication.outbox.emitted"


class UnpublishableChangeError(ReplicationError):
    """A flushed change cannot become a valid change event; the flush is refused."""


@dataclass(frozen=True)
class _Tracked:
    contract: ContractInfo
    to_contract: Callable[[Any], Contract]
    version_attr: str
    key_attrs: tuple[str, ...]


class OutboxTracker:
    """Writes outbox rows for flushed changes of the ORM models it tracks."""

    def __init__(self, table: sa.Table | None = None) -> None:
        self.table = table if table is not None else outbox_table()
        self._tracked: dict[type, _Tracked] = {}
        self._listening = False

    def track(
        self,
        model: type,
        contract: type[Contract],
        *,
        to_contract: Callable[[Any], Contract],
        version_attr: str | None = None,
        key_attrs: tuple[str, ...] | None = None,
    ) -> None:
        """Publish the changes of ``model`` (and its subclasses) as events of ``contract``."""
        info = contract.__contract__
        attr = version_attr or _version_attribute(model)
        already = model in self._tracked
        self._tracked[model] = _Tracked(info, to_contract, attr, key_attrs or info.key)
        if already:
            return
        event.listen(model, "after_insert", self._after_insert, propagate=True)
        event.listen(model, "after_update", self._after_update, propagate=True)
        event.listen(model, "after_delete", self._after_delete, propagate=True)
        if not self._listening:
            event.listen(Session, "after_flush", self._after_flush)
            event.listen(Session, "do_orm_execute", self._refuse_bulk_dml)
            event.listen(Session, "after_transaction_end", self._forget_emitted)
            self._listening = True

    def untrack(self, model: type) -> None:
        """Stop publishing the changes of ``model``."""
        if self._tracked.pop(model, None) is None:
            return
        event.remove(model, "after_insert", self._after_insert)
        event.remove(model, "after_update", self._after_update)
        event.remove(model, "after_delete", self._after_delete)

    def _spec(self, obj: Any) -> _Tracked | None:
        for cls in type(obj).__mro__:
            tracked = self._tracked.get(cls)
            if tracked is not None:
                return tracked
        return None

    # -- mapper events: what the flush actually wrote ----------------------------------

    def _after_insert(self, mapper: Mapper[Any], connection: sa.Connection, obj: Any) -> None:
        tracked = self._spec(obj)
        if tracked is not None:
            self._queue(obj, connection, self._upsert(tracked, obj))

    def _after_update(self, mapper: Mapper[Any], connection: sa.Connection, obj: Any) -> None:
        tracked = self._spec(obj)
        if tracked is None:
            return
        if not _has_net_change(mapper, obj, tracked.version_attr):
            return  # no net change: nothing was written
        old_key = self._old_key(tracked, obj)
        if old_key is not None:
            version = _version(tracked, obj)
            self._queue(obj, connection, deleted(tracked.contract, old_key, version))
        self._queue(obj, connection, self._upsert(tracked, obj))

    def _after_delete(self, mapper: Mapper[Any], connection: sa.Connection, obj: Any) -> None:
        tracked = self._spec(obj)
        if tracked is not None:
            key = tuple(getattr(obj, name) for name in tracked.key_attrs)
            version = _version(tracked, obj) + 1
            self._queue(obj, connection, deleted(tracked.contract, key, version))

    def _old_key(self, tracked: _Tracked, obj: Any) -> tuple[Any, ...] | None:
        state = sa.inspect(obj)
        old = []
        moved = False
        for name in tracked.key_attrs:
            history = state.attrs[name].history
            if history.deleted and history.added:
                old.append(history.deleted[0])
                moved = True
            else:
                old.append(getattr(obj, name))
        return tuple(old) if moved else None

    def _queue(self, obj: Any, connection: sa.Connection, change: ChangeEvent) -> None:
        session = object_session(obj)
        if session is None:  # pragma: no cover - flushed objects always have a session
            raise UnpublishableChangeError(f"{change!r} was flushed outside a session")
        emitted: dict[tuple[str, str], tuple[int, str]] = session.info.setdefault(_EMITTED, {})
        row = outbox_row(change)
        slot = (row["entity"], row["subject"])
        fingerprint = change.op + row["payload"].split('"data":', 1)[1]
        previous = emitted.get(slot)
        if previous is not None and previous[0] == change.version and previous[1] != fingerprint:
            raise UnpublishableChangeError(
                f"{change.entity} {change.subject!r} would be published twice at version "
                f"{change.version} with different states; increment its version before each "
                "flush that changes it"
            )
        emitted[slot] = (change.version, fingerprint)
        pending = session.info.setdefault(_PENDING, [])
        pending.append((connection, row))
        # Older major versions derived by a declared conversion go in the same transaction.
        pending.extend((connection, outbox_row(older)) for older in with_older_versions(change)[1:])

    # -- session events ---------------------------------------------------------------

    def _after_flush(self, session: Session, flush_context: UOWTransaction) -> None:
        pending: list[tuple[sa.Connection, dict[str, Any]]] = session.info.pop(_PENDING, [])
        by_connection: dict[int, tuple[sa.Connection, list[dict[str, Any]]]] = {}
        for connection, row in pending:
            by_connection.setdefault(id(connection), (connection, []))[1].append(row)
        for connection, rows in by_connection.values():
            insert_rows(connection, rows, self.table)

    def _forget_emitted(self, session: Session, transaction: Any) -> None:
        if transaction.parent is None:
            session.info.pop(_EMITTED, None)
            session.info.pop(_PENDING, None)

    def _refuse_bulk_dml(self, state: ORMExecuteState) -> None:
        if not (state.is_update or state.is_delete or state.is_insert):
            return
        for mapper in state.all_mappers:
            if any(issubclass(mapper.class_, model) for model in self._tracked):
                kind = "UPDATE" if state.is_update else "DELETE" if state.is_delete else "INSERT"
                raise UnpublishableChangeError(
                    f"bulk {kind} on {mapper.class_.__name__} would change rows without "
                    "writing their change events; load the objects and change them instead"
                )

    def _upsert(self, tracked: _Tracked, obj: Any) -> ChangeEvent:
        try:
            state = tracked.to_contract(obj)
        except ValidationError as exc:
            label = f"{type(obj).__name__} {tuple(getattr(obj, k) for k in tracked.key_attrs)!r}"
            raise UnpublishableChangeError(
                f"{label} does not satisfy {tracked.contract.label}: "
                f"{describe_validation_error(exc)}; the flush is refused so that no change "
                "is committed without its event"
            ) from None
        if not isinstance(state, tracked.contract.model):
            raise UnpublishableChangeError(
                f"to_contract returned {type(state).__name__}, not {tracked.contract.label}"
            )
        return upserted(state, _version(tracked, obj))


def _has_net_change(mapper: Mapper[Any], obj: Any, version_attr: str) -> bool:
    """Whether the flush changed a column attribute of ``obj`` other than its version."""
    columns = _COLUMN_KEYS.get(mapper)
    if columns is None:
        columns = _COLUMN_KEYS[mapper] = frozenset(a.key for a in mapper.column_attrs)
    state = instance_state(obj)
    # An attribute with history has its loaded value in committed_state: only those
    # can have changed, and looking at them alone spares a history of every column.
    return any(
        key in columns and key != version_attr and state.attrs[key].history.has_changes()
        for key in list(state.committed_state)
    )


_COLUMN_KEYS: weakref.WeakKeyDictionary[Mapper[Any], frozenset[str]] = weakref.WeakKeyDictionary()


def _version(tracked: _Tracked, obj: Any) -> int:
    value = getattr(obj, tracked.version_attr)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UnpublishableChangeError(
            f"{type(obj).__name__}.{tracked.version_attr} must be a positive integer "
            f"version, got {value!r}"
        )
    return value


def _version_attribute(model: type) -> str:
    mapper: Mapper[Any] = sa.inspect(model)
    column = mapper.version_id_col
    if column is None:
        raise ReplicationError(
            f"{model.__name__} has no version_id_col; declare one "
            "(__mapper_args__ = {'version_id_col': ...}) or pass version_attr="
        )
    prop = mapper.get_property_by_column(column)
    return str(prop.key)
