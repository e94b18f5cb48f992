"""Second look at rows whose hashes differ at the same version: which fields differ, if any.

Canonical texts are computed by each database's own functions, and a few
values have more than one text for the same content (MariaDB keeps JSON
escapes such as ``\\u00f6`` as written). So before a key is reported as
*differs*, both rows are read (only those keys) and compared as contract
values: the owner's through its source, the mirror's through the consumer's
reader of the contract. The report names the fields that differ, never their
values.
"""

from __future__ import annotations

__all__ = ["compare_mirror", "confirm_differences", "find_buried", "subject_of"]

import dataclasses
import datetime as dt
import json
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError

from replication.manifest import MirrorDeclaration
from replication.mirror.tables import DELETED, VERSION, mirror_table
from replication.mirror.values import converters
from replication.sync.reconcile import (
    Drift,
    Reconciliation,
    mirror_side,
    owner_side,
    reconcile,
)
from replication.sync.source import OwnerSource
from replication.sync.sql import canonical_value
from replication.sync.where import Condition

CHUNK = 500


def compare_mirror(
    source: OwnerSource,
    declaration: MirrorDeclaration,
    owner: sa.Engine,
    mirror: sa.Engine,
    *,
    where: Sequence[Condition] = (),
    buckets: int = 4096,
    limit: int = 10_000,
) -> Reconciliation:
    """Reconcile ``declaration``'s mirror with its owner's table, differences confirmed."""
    result = reconcile(
        owner_side(source, declaration, owner, where),
        mirror_side(declaration, mirror, where),
        buckets=buckets,
        limit=limit,
    )
    confirm_differences(result, source, declaration, owner, mirror)
    find_buried(result, declaration, mirror)
    return result


def find_buried(result: Reconciliation, declaration: MirrorDeclaration, mirror: sa.Engine) -> None:
    """Mark the *missing* keys whose mirror tombstone is at or above the owner's version."""
    missing = [d for d in result.drifts if d.kind == "missing"]
    if not missing:
        return
    info = declaration.contract
    table = mirror_table(declaration)
    keys = [table.c[k] for k in info.key]
    convert = converters(tuple(spec.kind for spec in info.key_specs), mirror.dialect.name)
    tombstones: dict[str, int] = {}
    with mirror.connect() as connection:
        for start in range(0, len(missing), CHUNK):
            chunk = missing[start : start + CHUNK]
            wanted = [
                tuple(
                    f(_typed(spec.kind, v))
                    for f, spec, v in zip(convert, info.key_specs, d.key, strict=True)
                )
                for d in chunk
            ]
            query = sa.select(*keys, table.c[VERSION]).where(
                sa.tuple_(*keys).in_(wanted), table.c[DELETED] == sa.true()
            )
            for row in connection.execute(query):
                tombstones[subject_of(info, row[: len(keys)])] = int(row[-1])
    result.drifts = [
        dataclasses.replace(d, mirror_version=tombstones[d.subject], buried=True)
        if d.kind == "missing"
        and d.subject in tombstones
        and tombstones[d.subject] >= (d.owner_version or 0)
        else d
        for d in result.drifts
    ]


def _typed(kind: str, value: Any) -> Any:
    """An owner's raw key value as the contract types it (UUIDs in any stored form)."""
    if kind == "uuid" and not isinstance(value, uuid.UUID):
        return uuid.UUID(str(value))
    return value


def confirm_differences(
    result: Reconciliation,
    source: OwnerSource,
    declaration: MirrorDeclaration,
    owner: sa.Engine,
    mirror: sa.Engine,
) -> None:
    """Drop the *differs* drifts whose mirrored values are equal; name the fields of the rest."""
    suspects = [d for d in result.drifts if d.kind == "differs"]
    result.unconfirmed = result.counts["differs"] - len(suspects)
    if not suspects:
        return
    confirmed: dict[str, Drift] = {}
    for start in range(0, len(suspects), CHUNK):
        chunk = suspects[start : start + CHUNK]
        owned = _owner_values(source, declaration, owner, chunk)
        mirrored = _mirror_values(declaration, mirror, owned)
        for drift in chunk:
            mine, theirs = owned.get(drift.subject), mirrored.get(drift.subject)
            if mine is None or theirs is None:
                confirmed[drift.subject] = drift  # changed meanwhile: keep it, a rerun tells
                continue
            if isinstance(theirs, tuple):  # the mirror's row is not valid for the contract
                fields = theirs
            else:
                fields = tuple(f for f in declaration.fields if mine[1].get(f) != theirs.get(f))
            if fields:
                confirmed[drift.subject] = dataclasses.replace(drift, fields=fields)
    kept = []
    for drift in result.drifts:
        if drift.kind != "differs":
            kept.append(drift)
        elif drift.subject in confirmed:
            kept.append(confirmed[drift.subject])
        else:
            result.counts["differs"] -= 1
    result.drifts = kept


def _owner_values(
    source: OwnerSource, declaration: MirrorDeclaration, owner: sa.Engine, chunk: list[Drift]
) -> dict[str, tuple[tuple[Any, ...], dict[str, Any]]]:
    info = declaration.contract
    found = {}
    for row in source.rows_with_keys(owner, [d.key for d in chunk]):
        state = source.state(row)
        values = state.model_dump(include=set(declaration.fields))
        found[subject_of(info, state.key_values())] = (state.key_values(), values)
    return found


def _mirror_values(
    declaration: MirrorDeclaration,
    mirror: sa.Engine,
    owned: dict[str, tuple[tuple[Any, ...], dict[str, Any]]],
) -> dict[str, dict[str, Any] | tuple[str, ...]]:
    """Each live mirror row's values, or the fields that make it invalid for the contract."""
    info = declaration.contract
    table = mirror_table(declaration)
    convert = converters(tuple(info.fields[k].kind for k in info.key), mirror.dialect.name)
    keys = [tuple(f(v) for f, v in zip(convert, typed, strict=True)) for typed, _ in owned.values()]
    if not keys:
        return {}
    reader = info.reader(declaration.fields)
    columns = [table.c[name] for name in declaration.fields]
    query = sa.select(*columns).where(
        sa.tuple_(*(table.c[k] for k in info.key)).in_(keys), table.c[DELETED] == sa.false()
    )
    found: dict[str, dict[str, Any] | tuple[str, ...]] = {}
    positions = [declaration.fields.index(k) for k in info.key]
    with mirror.connect() as connection:
        for row in connection.execute(query):
            subject = subject_of(info, tuple(row[i] for i in positions))
            values = {
                name: _loaded(info.fields[name].kind, value)
                for name, value in zip(declaration.fields, row, strict=True)
            }
            try:
                found[subject] = reader.model_validate(values).model_dump()
            except ValidationError as exc:
                bad = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
                found[subject] = tuple(f for f in declaration.fields if f in bad)
    return found


def _loaded(kind: str, value: Any) -> Any:
    """A mirror column's value as the contract reads it (JSON text parsed, UTC attached)."""
    if value is None:
        return None
    if kind == "json" and isinstance(value, str):
        return json.loads(value)
    if kind == "datetime" and isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    if kind == "datetime" and isinstance(value, str):
        return _loaded(kind, dt.datetime.fromisoformat(value))
    return value


def subject_of(info: Any, key: Iterable[Any]) -> str:
    """A key as reconcile names it: each part's canonical text, joined by commas."""
    kinds = [spec.kind for spec in info.key_specs]
    return ",".join(str(canonical_value(k, 0, v)) for k, v in zip(kinds, key, strict=True))
