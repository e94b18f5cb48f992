"""Which schema changes of a mirror a generated migration may make, and what to tell.

Autogenerate proposes operations; before Alembic writes the revision,
:func:`review` goes through them:

- an added mirror column is nullable (every mirrored field is), and existing
  rows hold NULL in it until their next change event: the note says how to
  fill it now (a backfill of this consumer);
- a dropped column is one the consumer removed from its declaration (the
  metadata holds exactly what the manifest declares): the note says its data
  is gone and a downgrade brings the column back empty;
- a type change is made only when every stored value fits the new type as it
  is (a longer string, a wider integer, a decimal with more digits on both
  sides of the point). Anything else needs a data migration and is refused,
  with the reason, before any file is written.
"""

from __future__ import annotations

__all__ = ["ReviewNotes", "review", "widens"]

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from alembic.operations import ops

from replication.errors import ConfigurationError
from replication.manifest import Manifest


@dataclass
class ReviewNotes:
    """What the person generating a revision should know about it."""

    lines: list[str] = field(default_factory=list)

    def add(self, line: str) -> None:
        """Keep a note and show it at once (plain ``alembic`` runs show it too)."""
        self.lines.append(line)
        print(f"note: {line}")


def widens(old: Any, new: Any) -> bool:
    """Whether every value of column type ``old`` is stored unchanged by type ``new``."""
    if isinstance(old, sa.Float) or isinstance(new, sa.Float):
        both = isinstance(old, sa.Float) and isinstance(new, sa.Float)
        return both and _float_bits(new) >= _float_bits(old)
    if isinstance(old, sa.Numeric) and isinstance(new, sa.Numeric):
        p1, s1 = old.precision, old.scale or 0
        p2, s2 = new.precision, new.scale or 0
        if p2 is None:
            return True
        return p1 is not None and s2 >= s1 and p2 - s2 >= p1 - s1
    if isinstance(old, sa.Integer) and isinstance(new, sa.Integer):
        return _integer_rank(new) >= _integer_rank(old)
    if isinstance(old, sa.String) and isinstance(new, sa.String):
        if new.length is None:
            return True
        return old.length is not None and new.length >= old.length
    return False


def _float_bits(kind: Any) -> int:
    return 32 if type(kind).__name__.upper() == "REAL" else 64


def _integer_rank(kind: Any) -> int:
    name = type(kind).__name__.upper()
    if name in ("TINYINT", "BOOLEAN"):
        return 0
    if isinstance(kind, sa.SmallInteger):
        return 1
    if isinstance(kind, sa.BigInteger):
        return 3
    return 2


def review(manifest: Manifest, directives: Iterable[Any], notes: ReviewNotes) -> None:
    """Check autogenerate's operations; raise ConfigurationError on an unsafe type change."""
    tables = {m.table: m for m in manifest.mirrors}
    refused: list[str] = []
    for script in directives:
        for table_ops in _table_ops(script.upgrade_ops):
            declaration = tables.get(table_ops.table_name)
            for op in _flatten(table_ops.ops):
                if isinstance(op, ops.AddColumnOp) and declaration is not None:
                    notes.add(
                        f"adds {op.table_name}.{op.column.name} (nullable): existing rows hold "
                        "NULL until their next change event; to fill it now, backfill this "
                        f"consumer: replication backfill --entity {declaration.contract.entity} "
                        f"--consumer {manifest.service}"
                    )
                elif isinstance(op, ops.DropColumnOp):
                    notes.add(
                        f"drops {op.table_name}.{op.column_name}: {manifest.service} no longer "
                        "declares it; its values are deleted (a downgrade adds it back empty)"
                    )
                elif isinstance(op, ops.AlterColumnOp) and op.modify_type is not None:
                    if not widens(op.existing_type, op.modify_type):
                        refused.append(
                            f"{op.table_name}.{op.column_name}: {op.existing_type} -> "
                            f"{op.modify_type}"
                        )
                    else:
                        notes.add(
                            f"widens {op.table_name}.{op.column_name}: {op.existing_type} -> "
                            f"{op.modify_type} (every stored value fits)"
                        )
    if refused:
        raise ConfigurationError(
            "refusing to generate: changing a column's type this way needs a data migration "
            "(stored values may not fit or need converting), which autogenerate cannot write:\n"
            + "\n".join(f"  {line}" for line in refused)
            + "\nMirror a new major version of the contract into a new table instead, or "
            "write this revision by hand (`alembic revision`) with the data step."
        )


def _table_ops(upgrade_ops: Any) -> Iterable[Any]:
    for op in upgrade_ops.ops:
        if isinstance(op, ops.ModifyTableOps):
            yield op


def _flatten(items: Iterable[Any]) -> Iterable[Any]:
    for op in items:
        if isinstance(op, ops.ModifyTableOps):
            yield from _flatten(op.ops)
        else:
            yield op
