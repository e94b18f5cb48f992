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

__all__ = ["compare_mirror", "confirm_differences"]

import datetime as dt
import json
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from replication.manifest import MirrorDeclaration
from replication.mirror.tables import mirror_table
from replication.mirror.values import converters
from replication.sync.reconcile import (
    Drift,
    Reconciliation,
    mirror_side,
    owner_side,
    reconcile,
)
from replication.sync.source import OwnerSource

CHUNK = 500


def compare_mirror(
    source: OwnerSource,
    declaration: MirrorDeclaration,
    owner: sa.Engine,
    mirror: sa.Engine,
    *,
    owner_where: list[Any] | None = None,
    mirror_where: list[Any] | None = None,
    buckets: int = 4096,
    limit: int = 10_000,
) -> Reconciliation:
    """Reconcile ``declaration``'s mirror with its owner's table, differences confirmed."""
    result = reconcile(
        owner_side(source, declaration, owner, owner_where),
        mirror_side(declaration, mirror, mirror_where),
        buckets=buckets,
        limit=limit,
    )
    confirm_differences(result, source, declaration, owner, mirror)
    return result


def confirm_differences(
    result: Reconciliation,
    source: OwnerSource,
    declaration: MirrorDeclaration,
    owner: sa.Engine,
    mirror: sa.Engine,
) -> None:
    """Drop the *differs* drifts whose mirrored values are equal; name the fields of the rest."""
    suspects = [d for d in result.drifts if d.kind == "differs"]
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
            fields = tuple(f for f in declaration.fields if mine[1].get(f) != theirs.get(f))
            if fields:
                confirmed[drift.subject] = Drift(
                    "differs",
                    drift.subject,
                    drift.key,
                    drift.owner_version,
                    drift.mirror_version,
                    fields,
                )
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
    keys = source.keys()
    query = source.select().where(sa.tuple_(*keys).in_([d.key for d in chunk]))
    found = {}
    with owner.connect() as connection:
        for row in connection.execute(query):
            state = source.state(row)
            values = state.model_dump(mode="json", include=set(declaration.fields))
            found[_subject(state.key_values())] = (state.key_values(), values)
    return found


def _mirror_values(
    declaration: MirrorDeclaration,
    mirror: sa.Engine,
    owned: dict[str, tuple[tuple[Any, ...], dict[str, Any]]],
) -> dict[str, dict[str, Any]]:
    info = declaration.contract
    table = mirror_table(declaration)
    dialect = mirror.dialect.name
    convert = converters(tuple(info.fields[k].kind for k in info.key), dialect)
    keys = [tuple(f(v) for f, v in zip(convert, typed, strict=True)) for typed, _ in owned.values()]
    if not keys:
        return {}
    reader = info.reader(declaration.fields)
    columns = [table.c[name] for name in declaration.fields]
    query = sa.select(*columns).where(sa.tuple_(*(table.c[k] for k in info.key)).in_(keys))
    found = {}
    with mirror.connect() as connection:
        for row in connection.execute(query):
            values = {
                name: _loaded(info.fields[name].kind, value)
                for name, value in zip(declaration.fields, row, strict=True)
            }
            state = reader.model_validate(values)
            found[_subject(state.key_values())] = state.model_dump(mode="json")
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
        return dt.datetime.fromisoformat(value)
    return value


def _subject(key: Iterable[Any]) -> str:
    return ",".join(str(part) for part in key)
