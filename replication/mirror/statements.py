"""The apply's SQL for one mirror table and one dialect, as plain data.

:class:`MirrorStatements` holds strings and tuples only; this module imports
no SQLAlchemy, so a Lambda can load statements rendered at build time
(:meth:`MirrorStatements.from_json`) and apply without paying for SQLAlchemy's
import. Rendering lives in :mod:`replication.mirror.render`.
"""

from __future__ import annotations

__all__ = ["MirrorStatements"]

import json
from dataclasses import asdict, dataclass
from typing import Any

from replication.dialects import dialect_named


@dataclass(frozen=True)
class MirrorStatements:
    """The SQL that applies change events to one mirror table on one dialect."""

    dialect: str
    entity: str
    contract_version: int
    table: str
    columns: tuple[str, ...]
    """Written columns: the key first, then mirrored fields, then metadata."""
    kinds: tuple[str, ...]
    """The field kind of each written column (how to convert its values)."""
    key_count: int
    paramstyle_marker: str
    insert_prefix: str
    row_template: str
    upsert_suffix: str
    rows_per_statement: int
    select_written_prefix: str
    """MySQL: reads back ``key..., event id, deleted`` of rows stamped with an applied-at."""
    key_template: str
    stage_setup: str
    stage_copy: str
    stage_merge: str
    stage_clear: str
    bulk_threshold: int
    refresh_update: str = ""
    """UPDATE of a live row held at exactly the given version (a backfill's or a repair's
    snapshot): data columns and stamps set, then the key, version and deleted flag matched."""
    returning_touched: str = ""
    """MySQL dialect: `` RETURNING key..., IF(applied-at = <marker>, event id, NULL)`` for a
    server whose guarded upsert can return every row it touched (MariaDB), sparing the
    read-back; its one parameter is this call's stamp. Files rendered before it held
    `` RETURNING key..., event id, deleted, applied-at`` (no parameter), still applied."""
    document_upsert: str = ""
    """The guarded upsert of the rows of one JSON document parameter (PostgreSQL), below the
    bulk threshold or with the bulk path off; empty: one bind parameter per value."""

    def rendered_for(self, dialect: str) -> bool:
        """Whether these statements are ``dialect``'s (by any of its names: ``mariadb`` too)."""
        return dialect_named(dialect).name == self.dialect

    def to_json(self) -> str:
        """This object as JSON, to render at build time and load at run time."""
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> MirrorStatements:
        """The object :meth:`to_json` wrote."""
        raw: dict[str, Any] = json.loads(text)
        for name in ("columns", "kinds"):
            raw[name] = tuple(raw[name])
        return cls(**raw)
