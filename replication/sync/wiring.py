"""An owner and one consumer of one entity, wired from the manifests."""

from __future__ import annotations

__all__ = ["Pair", "open_pair"]

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from replication.consumer.database import url_for
from replication.dburl import engine_url
from replication.errors import ConfigurationError
from replication.manifest import Manifest, MirrorDeclaration, load_manifests
from replication.sync.reconcile import Reconciliation
from replication.sync.source import OwnerSource, load_source
from replication.sync.where import Condition


@dataclass
class Pair:
    """The owner's source and the consumer's mirror of one entity version."""

    owner: Manifest
    consumer: Manifest
    declaration: MirrorDeclaration
    source: OwnerSource
    owner_engine: sa.Engine
    mirror_engine: sa.Engine | None
    """None when only the owner is read (a backfill)."""
    where: list[Condition] = field(default_factory=list)

    def compare(self, *, buckets: int = 4096, limit: int = 10_000) -> Reconciliation:
        """Reconcile the mirror with the owner (differences confirmed)."""
        from replication.sync.verify import compare_mirror

        if self.mirror_engine is None:
            raise ConfigurationError("this pair was opened without the consumer's database")
        return compare_mirror(
            self.source,
            self.declaration,
            self.owner_engine,
            self.mirror_engine,
            where=self.where,
            buckets=buckets,
            limit=limit,
        )


def _engine(url: str) -> sa.Engine:
    engine = sa.create_engine(engine_url(url), poolclass=sa.pool.NullPool)
    if engine.dialect.name not in ("postgresql", "mysql", "mariadb", "sqlite"):
        raise ConfigurationError(
            "backfill and reconcile read PostgreSQL, MySQL/MariaDB or SQLite, "
            f"not {engine.dialect.name}"
        )
    return engine


@contextmanager
def open_pair(
    manifests: list[Path],
    *,
    entity: str,
    consumer: str,
    owner_url: str | None = None,
    consumer_url: str | None = None,
    where: list[Condition] | None = None,
    mirror: bool = True,
) -> Iterator[Pair]:
    """The pair of ``consumer``'s mirror of ``entity`` and its owner, engines disposed after."""
    found = {m.service: m for m in load_manifests(manifests)}
    reader = found.get(consumer)
    if reader is None:
        raise ConfigurationError(
            f"unknown service {consumer!r} (known: {', '.join(sorted(found))})"
        )
    try:
        declaration = reader.mirror(entity)
    except KeyError:
        mirrored = ", ".join(m.contract.entity for m in reader.mirrors) or "nothing"
        raise ConfigurationError(
            f"{consumer} does not mirror {entity} (it mirrors: {mirrored})"
        ) from None
    info = declaration.contract
    owner = found.get(info.owner)
    if owner is None:
        raise ConfigurationError(f"no manifest of {info.owner}, the owner of {entity}, was found")
    owned = [o for o in owner.owns if (o.entity, o.version) == (info.entity, info.version)]
    if not owned or owned[0].source is None:
        raise ConfigurationError(
            f"{owner.service}'s manifest names no source for {info.label}: add "
            "'source: <module>:<OwnerSource attribute>' to its owns entry (docs/sync.md)"
        )
    source = load_source(owned[0].source)
    if source.info is not info:
        raise ConfigurationError(
            f"{owned[0].source} is the source of {source.info.label}, not {info.label}"
        )
    engines: list[Any] = []
    try:
        owner_engine = _engine(owner_url or url_for(owner))
        engines.append(owner_engine)
        mirror_engine = _engine(consumer_url or url_for(reader)) if mirror else None
        engines.append(mirror_engine)
        yield Pair(owner, reader, declaration, source, owner_engine, mirror_engine, where or [])
    finally:
        for engine in engines:
            if engine is not None:
                engine.dispose()
