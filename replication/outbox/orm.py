"""ORM integration: flushed inserts, updates and deletes write their outbox rows.

Owners declare once that an ORM model maps to a contract; from then on every
flush of a session writes, in the same transaction, one change event per
inserted, updated or deleted row of that model::

    tracker = OutboxTracker()
    tracker.track(ProductRow, Product, to_contract=lambda row: Product(...))
    tracker.install(Session)       # or a sessionmaker, or one session

The per-key version is the model's SQLAlchemy ``version_id_col`` (or a named
attribute that the owner increments). A delete is published at the row's
version plus one, since SQLAlchemy does not bump the counter on delete.

A row whose contract validation fails makes the flush fail: an owner never
commits a change it cannot publish.
"""

from __future__ import annotations

__all__ = ["OutboxTracker", "UnpublishableChangeError"]

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy import event
from sqlalchemy.orm import Session, UOWTransaction, sessionmaker

from replication.contracts import Contract, ContractInfo
from replication.errors import ReplicationError
from replication.events import ChangeEvent, deleted, describe_validation_error, upserted
from replication.outbox.record import insert_rows, outbox_row
from replication.outbox.table import outbox_table


class UnpublishableChangeError(ReplicationError):
    """A flushed row cannot become a valid change event; the flush is refused."""


@dataclass(frozen=True)
class _Tracked:
    contract: ContractInfo
    to_contract: Callable[[Any], Contract]
    version_attr: str
    key_of: Callable[[Any], tuple[Any, ...]]


class OutboxTracker:
    """Writes outbox rows for flushed changes of the ORM models it tracks."""

    def __init__(self, table: sa.Table | None = None) -> None:
        self.table = table if table is not None else outbox_table()
        self._tracked: dict[type, _Tracked] = {}

    def track(
        self,
        model: type,
        contract: type[Contract],
        *,
        to_contract: Callable[[Any], Contract],
        version_attr: str | None = None,
        key_of: Callable[[Any], tuple[Any, ...]] | None = None,
    ) -> None:
        """Publish the changes of ``model`` as events of ``contract``."""
        info = contract.__contract__
        attr = version_attr or _version_attribute(model)
        if key_of is None:
            names = info.key

            def key_of(row: Any) -> tuple[Any, ...]:
                return tuple(getattr(row, name) for name in names)

        self._tracked[model] = _Tracked(info, to_contract, attr, key_of)

    def install(self, target: type[Session] | sessionmaker[Any] | Session = Session) -> None:
        """Listen to flushes of ``target`` (the Session class, a sessionmaker, or one session)."""
        event.listen(target, "after_flush", self._after_flush)

    def uninstall(self, target: type[Session] | sessionmaker[Any] | Session = Session) -> None:
        """Stop listening to ``target``."""
        event.remove(target, "after_flush", self._after_flush)

    def events_for(self, session: Session) -> list[ChangeEvent]:
        """The change events of what ``session`` is flushing (call during a flush)."""
        events: list[ChangeEvent] = []
        for obj in session.new:
            tracked = self._tracked.get(type(obj))
            if tracked is not None:
                events.append(self._upsert(tracked, obj))
        for obj in session.dirty:
            tracked = self._tracked.get(type(obj))
            if tracked is not None and session.is_modified(obj, include_collections=False):
                events.append(self._upsert(tracked, obj))
        for obj in session.deleted:
            tracked = self._tracked.get(type(obj))
            if tracked is not None:
                version = _version(tracked, obj) + 1
                events.append(deleted(tracked.contract, tracked.key_of(obj), version))
        return events

    def _after_flush(self, session: Session, flush_context: UOWTransaction) -> None:
        events = self.events_for(session)
        if events:
            insert_rows(session.connection(), [outbox_row(e) for e in events], self.table)

    def _upsert(self, tracked: _Tracked, obj: Any) -> ChangeEvent:
        label = f"{type(obj).__name__} {tracked.key_of(obj)!r}"
        try:
            state = tracked.to_contract(obj)
        except ValidationError as exc:
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


def _version(tracked: _Tracked, obj: Any) -> int:
    value = getattr(obj, tracked.version_attr)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UnpublishableChangeError(
            f"{type(obj).__name__}.{tracked.version_attr} must be a positive integer "
            f"version, got {value!r}"
        )
    return value


def _version_attribute(model: type) -> str:
    mapper: sa.orm.Mapper[Any] = sa.inspect(model)
    column = mapper.version_id_col
    if column is None:
        raise ReplicationError(
            f"{model.__name__} has no version_id_col; declare one "
            "(__mapper_args__ = {'version_id_col': ...}) or pass version_attr="
        )
    prop = mapper.get_property_by_column(column)
    return str(prop.key)
