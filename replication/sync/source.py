"""Where an owner's current rows are: the table a backfill reads and a reconcile checks.

The owner declares it once, next to its tables, and names it in its manifest::

    customer_source = OwnerSource(
        Customer,
        CustomerRow.__table__,
        version="version",
        columns={"address": json_object(street=t.c.street, city=t.c.city, ...)},
        to_contract=to_contract,
    )

    # examples/crm/replication.yaml
    owns:
      - entity: crm.customer
        version: 1
        source: examples.crm.service:customer_source

Each contract field is read from the column of the same name unless
``columns`` gives an SQL expression for it; ``to_contract`` builds the state
from a row of the table (default: the contract's fields from those
expressions). Only the mirrored fields need an expression for a reconcile.
"""

from __future__ import annotations

__all__ = ["OwnerSource", "load_source"]

import importlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.expression import ColumnElement

from replication.contracts import Contract, ContractInfo
from replication.errors import ConfigurationError
from replication.events import ChangeEvent, upserted

_LABEL = "field__"


@dataclass(frozen=True)
class OwnerSource:
    """An owner's table of one contract version, read in key order."""

    contract: type[Contract]
    table: sa.Table
    version: str
    """The column holding each key's current version (the one its events carry)."""
    columns: Mapping[str, ColumnElement[Any]] = field(default_factory=dict)
    to_contract: Callable[[Any], Contract] | None = None

    def __post_init__(self) -> None:
        if self.version not in self.table.c:
            raise ConfigurationError(
                f"source of {self.info.label}: table {self.table.name} has no column "
                f"{self.version!r} (the version)"
            )
        unknown = sorted(set(self.columns) - set(self.info.fields))
        if unknown:
            raise ConfigurationError(
                f"source of {self.info.label}: {', '.join(unknown)} are not fields of the contract"
            )
        for name in self.info.key:
            self.expression(name)

    @property
    def info(self) -> ContractInfo:
        """The contract this table is the source of."""
        return self.contract.__contract__

    @property
    def version_column(self) -> ColumnElement[Any]:
        """The version column."""
        return self.table.c[self.version]

    def expression(self, name: str) -> ColumnElement[Any]:
        """The SQL giving field ``name``; ConfigurationError when there is none."""
        if name in self.columns:
            return self.columns[name]
        if name in self.table.c:
            return self.table.c[name]
        raise ConfigurationError(
            f"source of {self.info.label}: table {self.table.name} has no column {name!r}; "
            f"give it an expression in columns={{{name!r}: ...}}"
        )

    def keys(self) -> list[ColumnElement[Any]]:
        """The key fields' expressions, in key order."""
        return [self.expression(name) for name in self.info.key]

    def select(self) -> sa.Select[Any]:
        """Every column of the table, plus the field expressions, labelled."""
        extra = [expr.label(_LABEL + name) for name, expr in self.columns.items()]
        return sa.select(*self.table.c, *extra)

    def state(self, row: Any) -> Contract:
        """The contract state of a row of :meth:`select`."""
        if self.to_contract is not None:
            return self.to_contract(row)
        mapping = row._mapping
        values = {
            name: mapping[_LABEL + name] if name in self.columns else mapping[name]
            for name in self.info.fields
            if name in self.columns or name in mapping
        }
        return self.contract.model_validate(values)

    def snapshot(self, row: Any) -> ChangeEvent:
        """The upsert of a row of :meth:`select`: its state at its current version."""
        return upserted(self.state(row), int(row._mapping[self.version]))

    def rows_with_keys(self, engine: sa.Engine, keys: Sequence[tuple[Any, ...]]) -> list[Any]:
        """The rows of :meth:`select` with these keys (as the owner's columns hold them)."""
        query = self.select().where(sa.tuple_(*self.keys()).in_(list(keys)))
        with engine.connect() as connection:
            return list(connection.execute(query))

    def pages(
        self,
        connection: sa.Connection,
        *,
        size: int,
        after: tuple[Any, ...] | None = None,
        where: list[ColumnElement[bool]] | None = None,
    ) -> Iterator[list[Any]]:
        """Rows in key order, ``size`` at a time, from after the key ``after`` (keyset pages)."""
        keys = self.keys()
        position = after
        while True:
            query = self.select().where(*(where or []))
            if position is not None:
                query = query.where(sa.tuple_(*keys) > sa.tuple_(*position))
            rows = list(connection.execute(query.order_by(*keys).limit(size)))
            if not rows:
                return
            yield rows
            position = self.key_of(rows[-1])
            if len(rows) < size:
                return

    def key_of(self, row: Any) -> tuple[Any, ...]:
        """The raw key values (as the owner's table holds them) of a row of :meth:`select`."""
        mapping = row._mapping
        return tuple(
            mapping[_LABEL + name] if name in self.columns else mapping[name]
            for name in self.info.key
        )


def load_source(reference: str) -> OwnerSource:
    """The source named ``module:attribute`` (as an owner's manifest names it)."""
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise ConfigurationError(f"a source is named 'module:attribute', got {reference!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"cannot import {module_name!r} for source {reference}: {exc}"
        ) from None
    source = getattr(module, attribute, None)
    if not isinstance(source, OwnerSource):
        raise ConfigurationError(f"{reference} is not an OwnerSource")
    return source
