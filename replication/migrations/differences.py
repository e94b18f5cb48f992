"""How a service's database differs from its declarations, said in words.

Alembic's autogenerate comparison, limited to the service's own tables (others
may share the database), each difference described as a line a person reads.
"""

from __future__ import annotations

__all__ = ["describe_difference", "differences", "engine_of"]

from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext

from replication.errors import ConfigurationError


def engine_of(config: Config) -> sa.Engine:
    """An engine on the configuration's database, holding no connection between uses."""
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise ConfigurationError("this command reads the database: give --url")
    return sa.create_engine(url.replace("%%", "%"), poolclass=sa.pool.NullPool)


def differences(config: Config) -> list[str]:
    """Each way the database differs from the service's declarations; none when it matches."""
    metadata: sa.MetaData = config.attributes["replication.metadata"]
    engine = engine_of(config)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={
                    "compare_type": True,
                    "include_name": lambda name, kind, parent: (
                        kind != "table" or name in metadata.tables
                    ),
                },
            )
            found = compare_metadata(context, metadata)
    finally:
        engine.dispose()
    return [describe_difference(d) for d in found]


def describe_difference(difference: Any) -> str:
    """One autogenerate difference as a line a person reads."""
    if isinstance(difference, list):  # column modifications come grouped
        return "; ".join(describe_difference(d) for d in difference)
    kind = difference[0]
    if kind == "add_table":
        return f"table {difference[1].name} is declared but missing"
    if kind == "remove_table":
        return f"table {difference[1].name} exists but is no longer declared"
    if kind == "add_column":
        column = difference[3]
        return f"column {difference[2]}.{column.name} ({column.type}) is declared but missing"
    if kind == "remove_column":
        return f"column {difference[2]}.{difference[3].name} exists but is no longer declared"
    if kind == "modify_type":
        return (
            f"column {difference[2]}.{difference[3]} is {difference[5]} in the database, "
            f"declared {difference[6]}"
        )
    if kind == "modify_nullable":
        wanted = "nullable" if difference[6] else "NOT NULL"
        return f"column {difference[2]}.{difference[3]} should be {wanted}"
    if kind == "modify_default":
        return (
            f"column {difference[2]}.{difference[3]} has default {_default(difference[5])} "
            f"in the database, declared {_default(difference[6])}"
        )
    if kind == "modify_comment":
        return (
            f"column {difference[2]}.{difference[3]} has comment {difference[5]!r} "
            f"in the database, declared {difference[6]!r}"
        )
    if kind in ("add_index", "add_constraint", "add_fk"):
        return f"{_constraint(difference[1])} is declared but missing"
    if kind in ("remove_index", "remove_constraint", "remove_fk"):
        return f"{_constraint(difference[1])} exists but is no longer declared"
    if kind == "add_table_comment":
        table = difference[1]
        return (
            f"table {table.name} has comment {difference[2]!r} in the database, "
            f"declared {table.comment!r}"
        )
    if kind == "remove_table_comment":
        return f"table {difference[1].name} has a comment that is no longer declared"
    details = ", ".join(str(part) for part in difference[1:] if part is not None)
    return f"{kind.replace('_', ' ')}: {details}"


def _default(default: Any) -> str:
    if default is None:
        return "none"
    text = getattr(default, "arg", default)  # a DefaultClause holds its text in arg
    return str(getattr(text, "text", text))


def _constraint(item: sa.Index | sa.Constraint) -> str:
    """``unique index ix_name on table (a, b)``, ``foreign key fk on t (a) -> u (b)``."""
    if isinstance(item, sa.Index):
        names = [getattr(e, "name", None) or str(e) for e in item.expressions]
        what = "unique index" if item.unique else "index"
    else:
        names = [c.name for c in getattr(item, "columns", ())]
        what = {
            "UniqueConstraint": "unique constraint",
            "ForeignKeyConstraint": "foreign key",
            "CheckConstraint": "check constraint",
            "PrimaryKeyConstraint": "primary key",
        }.get(type(item).__name__, type(item).__name__)
    table = item.table.name if isinstance(item.table, sa.Table) else "?"
    text = f"{what} {item.name or '(unnamed)'} on {table} ({', '.join(names)})"
    if isinstance(item, sa.ForeignKeyConstraint):
        target = ", ".join(element.target_fullname for element in item.elements)
        text += f" -> {target}"
    return text
