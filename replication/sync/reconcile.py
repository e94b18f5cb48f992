"""Compare a mirror with its owner's table without moving the rows across.

Two passes, each run on both databases at once:

1. **buckets**: every live row is hashed inside its database (key, version
   and the mirrored fields, in canonical text, see :mod:`replication.sync.sql`)
   and the hashes are counted and summed per bucket of keys. Only the bucket
   sums travel: a few thousand numbers, whatever the table size.
2. **keys**: the rows of the buckets whose sums differ are streamed from both
   sides in the same order (an integer hash of the key) and merged, which
   names each differing key.

A key is *missing* (the owner has it, the mirror has no live row), *extra*
(a live mirror row the owner no longer has), *older* (the mirror holds an
older version), *differs* (same version, other content) or *ahead* (the
mirror holds a newer version than the owner, which a correct owner never
causes).
"""

from __future__ import annotations

__all__ = [
    "DRIFT_KINDS",
    "Drift",
    "Reconciliation",
    "Side",
    "mirror_side",
    "owner_side",
    "reconcile",
]

import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.sql.expression import ColumnElement

from replication.dialects import Dialect, dialect_named
from replication.errors import ConfigurationError
from replication.manifest import MirrorDeclaration
from replication.mirror.tables import DELETED, VERSION, mirror_table
from replication.sync.source import OwnerSource
from replication.sync.sql import (
    SEPARATOR,
    binary_text,
    bucket_of,
    canonical,
    connect,
    field_parts,
    joined,
    key_order,
    row_hash,
)
from replication.sync.where import Condition, filters

DriftKind = Literal["missing", "extra", "older", "differs", "ahead"]
DRIFT_KINDS: tuple[DriftKind, ...] = ("missing", "extra", "older", "differs", "ahead")
GROUPING_MEMORY = "64MB"


@dataclass(frozen=True)
class Side:
    """One table to compare, with the SQL for its keys, version and mirrored fields."""

    name: str
    engine: sa.Engine
    table: sa.Table
    keys: Sequence[tuple[ColumnElement[Any], str]]
    version: ColumnElement[Any]
    fields: Sequence[tuple[str, list[ColumnElement[Any]], bool]]
    """Each compared field: its canonical texts, and whether they are normalised JSON text."""
    where: Sequence[ColumnElement[bool]] = field(default_factory=list)

    @property
    def dialect(self) -> Dialect:
        """The database's dialect."""
        return dialect_named(self.engine.dialect.name)

    @property
    def database(self) -> str:
        """The database's name where its comparison SQL differs from its dialect's others'
        (``mariadb`` apart from ``mysql``: their JSON differs)."""
        return self.dialect.variant(self.engine.dialect)

    def key_text(self) -> ColumnElement[Any]:
        """The canonical text of the key."""
        return joined([canonical(expr, kind) for expr, kind in self.keys])

    def row_parts(self, skipped: frozenset[str]) -> list[ColumnElement[Any]]:
        """The canonical texts a row's hash covers: key, version, compared fields."""
        parts: list[ColumnElement[Any]] = [canonical(expr, kind) for expr, kind in self.keys]
        parts.append(canonical(self.version, "int"))
        for name, texts, _ in self.fields:
            if name not in skipped:
                parts.extend(texts)
        return parts


def _fields(
    declaration: MirrorDeclaration, expression: Any
) -> list[tuple[str, list[ColumnElement[Any]], bool]]:
    info = declaration.contract
    found = []
    for name in declaration.fields:
        if name in info.key:
            continue
        spec = info.fields[name]
        texts, json_text = field_parts(info.model, name, spec.kind, spec.scale, expression(name))
        found.append((name, texts, json_text))
    return found


def owner_side(
    source: OwnerSource,
    declaration: MirrorDeclaration,
    engine: sa.Engine,
    where: Sequence[Condition] = (),
) -> Side:
    """The owner's table, restricted to the fields ``declaration`` mirrors (and ``where``)."""
    info = declaration.contract
    keys = [(source.expression(k), info.fields[k].kind) for k in info.key]
    fields = _fields(declaration, source.expression)
    dialect = engine.dialect.name
    owned = filters(where, source.expression, dialect)
    return Side("owner", engine, source.table, keys, source.version_column, fields, owned)


def mirror_side(
    declaration: MirrorDeclaration,
    engine: sa.Engine,
    where: Sequence[Condition] = (),
) -> Side:
    """The consumer's mirror: its live rows (tombstones are the owner's absent keys)."""
    table = mirror_table(declaration)
    info = declaration.contract
    keys = [(table.c[k], info.fields[k].kind) for k in info.key]
    fields = _fields(declaration, lambda name: table.c[name])
    unmirrored = [c.text for c in where if c.field not in declaration.fields]
    if unmirrored:
        raise ConfigurationError(
            f"--where {', '.join(unmirrored)}: {declaration.service} does not mirror that "
            "field, so its mirror cannot be filtered on it"
        )
    dialect = engine.dialect.name
    live = [table.c[DELETED] == sa.false(), *filters(where, lambda name: table.c[name], dialect)]
    return Side("mirror", engine, table, keys, table.c[VERSION], fields, live)


@dataclass(frozen=True)
class Drift:
    """One key where the mirror differs from its owner."""

    kind: DriftKind
    subject: str
    key: tuple[Any, ...]
    """The key as the side holding the row stores it (the owner's, or the mirror's for extra)."""
    owner_version: int | None
    mirror_version: int | None
    fields: tuple[str, ...] = ()
    """For *differs*: the mirrored fields whose values differ."""
    buried: bool = False
    """For *missing*: the mirror holds a tombstone at or above the owner's version, so no
    event of the owner's can bring the row back (it reused a deleted key without
    continuing its version); ``mirror_version`` is the tombstone's."""


@dataclass
class Reconciliation:
    """What a reconcile found."""

    buckets: int
    owner_rows: int = 0
    mirror_rows: int = 0
    differing_buckets: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DRIFT_KINDS, 0))
    drifts: list[Drift] = field(default_factory=list)
    """The differing keys, up to the limit asked for (``counts`` has them all)."""
    skipped_fields: tuple[str, ...] = ()
    """Mirrored fields left out of the content comparison (JSON across two dialects)."""
    unconfirmed: int = 0
    """*differs* keys beyond the limit, counted but not given the second look."""
    seconds: float = 0.0

    @property
    def total(self) -> int:
        """Differing keys, all kinds."""
        return sum(self.counts.values())


def reconcile(
    owner: Side, mirror: Side, *, buckets: int = 4096, limit: int = 10_000
) -> Reconciliation:
    """Compare ``owner`` and ``mirror``; at most ``limit`` drifts are kept in the report."""
    started = time.monotonic()
    # Both on one database: its own hash functions, faster than MD5 and equal on both
    # sides, and its own JSON text; across two, MD5 and no JSON text.
    portable = owner.database != mirror.database
    skipped = frozenset(name for name, _, json_text in mirror.fields if json_text and portable)
    result = Reconciliation(buckets, skipped_fields=tuple(sorted(skipped)))
    alone = [s.database for s in (owner, mirror) if not s.dialect.portable_hashes]
    if portable and alone:
        raise ConfigurationError(
            f"cannot compare {owner.database} with {mirror.database}: {alone[0]} is compared "
            f"with {alone[0]} only"
        )
    with ThreadPoolExecutor(2) as pool:
        owner_sums, mirror_sums = pool.map(
            lambda s: _bucket_sums(s, buckets, skipped, portable), (owner, mirror)
        )
    result.owner_rows = sum(count for count, _ in owner_sums.values())
    result.mirror_rows = sum(count for count, _ in mirror_sums.values())
    differing = sorted(
        b for b in set(owner_sums) | set(mirror_sums) if owner_sums.get(b) != mirror_sums.get(b)
    )
    result.differing_buckets = len(differing)
    if differing:
        _compare_keys(owner, mirror, differing, buckets, skipped, portable, result, limit)
    result.seconds = time.monotonic() - started
    return result


def _bucket_sums(
    side: Side, buckets: int, skipped: frozenset[str], portable: bool
) -> dict[int, tuple[int, int]]:
    inner = (
        sa.select(
            bucket_of(side.key_text(), buckets, portable=portable).label("bucket"),
            row_hash(side.row_parts(skipped), portable=portable).label("hash"),
        )
        .select_from(side.table)
        .where(*side.where)
        .subquery()
    )
    query = sa.select(inner.c.bucket, sa.func.count(), sa.func.sum(inner.c.hash)).group_by(
        inner.c.bucket
    )
    with connect(side.engine) as connection:
        side.dialect.prepare_grouping(connection, GROUPING_MEMORY)
        return {int(b): (int(n), int(h)) for b, n, h in connection.execute(query)}


def _stream(
    side: Side, differing: list[int], buckets: int, skipped: frozenset[str], portable: bool
) -> Iterator[tuple[int, str, tuple[Any, ...], int, int]]:
    text = side.key_text()
    query = (
        sa.select(
            key_order(text, portable=portable).label("position"),
            text.label("subject"),
            sa.func.coalesce(side.version, 0).label("version"),
            row_hash(side.row_parts(skipped), portable=portable).label("hash"),
            *(expr.label(f"key_{i}") for i, (expr, _) in enumerate(side.keys)),
        )
        .select_from(side.table)
        .where(*side.where)
        .order_by("position", binary_text(text))
    )
    if len(differing) < buckets:
        query = query.where(bucket_of(text, buckets, portable=portable).in_(differing))
    with connect(side.engine) as connection:
        streamed = connection.execution_options(stream_results=True, max_row_buffer=2000)
        for row in streamed.execute(query):
            yield int(row[0]), str(row[1]), tuple(row[4:]), int(row[2]), int(row[3])


def _compare_keys(
    owner: Side,
    mirror: Side,
    differing: list[int],
    buckets: int,
    skipped: frozenset[str],
    portable: bool,
    result: Reconciliation,
    limit: int,
) -> None:
    left = _stream(owner, differing, buckets, skipped, portable)
    right = _stream(mirror, differing, buckets, skipped, portable)
    a = next(left, None)
    b = next(right, None)

    def found(
        kind: DriftKind, row: Any, owner_version: int | None, mirror_version: int | None
    ) -> None:
        result.counts[kind] += 1
        if len(result.drifts) < limit:
            subject = row[1].replace(SEPARATOR, ",")
            result.drifts.append(Drift(kind, subject, row[2], owner_version, mirror_version))

    while a is not None or b is not None:
        if b is None or (a is not None and (a[0], a[1]) < (b[0], b[1])):
            assert a is not None
            found("missing", a, a[3], None)
            a = next(left, None)
        elif a is None or (b[0], b[1]) < (a[0], a[1]):
            found("extra", b, None, b[3])
            b = next(right, None)
        else:
            if b[3] < a[3]:
                found("older", a, a[3], b[3])
            elif b[3] > a[3]:
                found("ahead", a, a[3], b[3])
            elif a[4] != b[4]:
                found("differs", a, a[3], b[3])
            a = next(left, None)
            b = next(right, None)
