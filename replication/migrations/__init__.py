"""Alembic support: the tables of one service, migrated with Alembic's own machinery.

The metadata of a service is its mirror tables, plus the outbox when it owns
entities. The Alembic environment lives in the service's repository, in the
folder its manifest names (``migrations:``, default ``migrations/`` beside the
manifest), which ``replication init`` writes from :data:`TEMPLATE` as
``alembic init`` does. Each service keeps its revisions in
``<environment>/versions/<service>/`` (or a folder of its choosing, never in
the installed package) and its own version table, ``alembic_version_<service>``,
so several services may share a database and an environment.
"""

from __future__ import annotations

__all__ = [
    "TEMPLATE",
    "alembic_config",
    "check",
    "current",
    "describe_difference",
    "downgrade",
    "environment_of",
    "generate",
    "revision_processor",
    "service_metadata",
    "upgrade",
]

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import renderers, rewriter
from alembic.config import Config
from alembic.operations import MigrateOperation, Operations, ops
from alembic.runtime.migration import MigrationContext

from replication.consumer.failures_table import failures_table
from replication.dburl import engine_url
from replication.errors import ConfigurationError
from replication.manifest import Manifest
from replication.mirror.evolution import ReviewNotes, review
from replication.mirror.tables import mirror_table
from replication.outbox.table import (
    OUTBOX_TABLE,
    create_notify_sql,
    drop_notify_sql,
    outbox_table,
)

TEMPLATE = Path(__file__).resolve().parent / "template"
"""The Alembic environment (``env.py``, ``script.py.mako``) that ``replication init`` copies."""


def service_metadata(manifest: Manifest) -> sa.MetaData:
    """The tables the project keeps for ``manifest``'s service."""
    metadata = sa.MetaData()
    for declaration in manifest.mirrors:
        mirror_table(declaration, metadata)
    if manifest.mirrors:
        failures_table(metadata)
    if manifest.owns:
        outbox_table(metadata)
    return metadata


def environment_of(manifest: Manifest, versions: Path | None = None) -> Path:
    """The service's Alembic environment: the folder its manifest names.

    With an explicit ``versions`` folder and no environment of its own, the
    packaged one (the same ``env.py``) runs; revisions still go to ``versions``.
    """
    folder = manifest.migrations or manifest.path.resolve().parent / "migrations"
    if (folder / "env.py").is_file():
        return folder
    if versions is not None:
        return TEMPLATE
    raise ConfigurationError(
        f"service {manifest.service}: no Alembic environment at {folder} (the manifest's "
        f"'migrations', default migrations/ beside it): 'replication init --service "
        f"{manifest.service} --migrations-only' writes one beside the manifest, or pass "
        "--versions DIR to keep revisions there with the packaged environment"
    )


def alembic_config(
    manifest: Manifest,
    url: str,
    *,
    versions: Path | None = None,
    script_location: Path | None = None,
) -> Config:
    """An Alembic configuration for one service and one database."""
    config = Config()
    script_location = script_location or environment_of(manifest, versions)
    folder = versions or script_location / "versions" / manifest.service
    if script_location == TEMPLATE and versions is None:
        raise ConfigurationError("revisions never go into the installed package: give versions")
    folder.mkdir(parents=True, exist_ok=True)
    config.set_main_option("script_location", str(script_location))
    config.set_main_option("version_locations", str(folder))
    config.set_main_option("sqlalchemy.url", engine_url(url).replace("%", "%%"))
    config.attributes["replication.manifest"] = manifest
    config.attributes["replication.metadata"] = service_metadata(manifest)
    config.attributes["replication.notes"] = ReviewNotes()
    return config


def generate(config: Config, message: str) -> Any:
    """Autogenerate a revision from the difference between the database and the declarations.

    Raises ConfigurationError, and writes nothing, when there is no difference.
    """
    script = command.revision(
        config, message=message, autogenerate=True, process_revision_directives=_unless_empty
    )
    if not script:
        raise ConfigurationError("nothing to generate: the database matches the declarations")
    return script


def _unless_empty(context: MigrationContext, revision: Any, directives: list[Any]) -> None:
    # Alembic writes a revision per directive left in the list; an empty
    # revision would only lengthen the chain.
    if all(upgrade.is_empty() for script in directives for upgrade in script.upgrade_ops_list):
        directives[:] = []


def upgrade(config: Config, revision: str = "head") -> None:
    """Upgrade the database to ``revision``."""
    command.upgrade(config, revision)


def downgrade(config: Config, revision: str) -> None:
    """Downgrade the database to ``revision``."""
    command.downgrade(config, revision)


def current(config: Config) -> tuple[str, ...]:
    """The revisions the database is at (none at base), read from the service's version table."""
    manifest: Manifest = config.attributes["replication.manifest"]
    engine = _engine(config)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"version_table": f"alembic_version_{manifest.service}"}
            )
            return context.get_current_heads()
    finally:
        engine.dispose()


def _engine(config: Config) -> sa.Engine:
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None
    return sa.create_engine(url.replace("%%", "%"), poolclass=sa.pool.NullPool)


def check(config: Config) -> None:
    """Raise ConfigurationError listing how the database differs from the declarations."""
    from alembic.autogenerate import compare_metadata

    metadata: sa.MetaData = config.attributes["replication.metadata"]
    engine = _engine(config)
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
            differences = compare_metadata(context, metadata)
    finally:
        engine.dispose()
    if differences:
        lines = [describe_difference(d) for d in differences]
        raise ConfigurationError(
            "the database differs from the declarations (generate and apply a migration):\n"
            + "\n".join(f"  {line}" for line in lines)
        )


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


@Operations.register_operation("create_outbox_notify")
class CreateOutboxNotifyOp(MigrateOperation):
    """Create the outbox's NOTIFY trigger (PostgreSQL only; nothing elsewhere)."""

    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    @classmethod
    def create_outbox_notify(cls, operations: Operations, table_name: str) -> Any:
        """``op.create_outbox_notify(name)`` in a migration script."""
        return operations.invoke(cls(table_name))

    def reverse(self) -> MigrateOperation:
        return DropOutboxNotifyOp(self.table_name)


@Operations.register_operation("drop_outbox_notify")
class DropOutboxNotifyOp(MigrateOperation):
    """Drop the outbox's NOTIFY trigger (PostgreSQL only; nothing elsewhere)."""

    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    @classmethod
    def drop_outbox_notify(cls, operations: Operations, table_name: str) -> Any:
        """``op.drop_outbox_notify(name)`` in a migration script."""
        return operations.invoke(cls(table_name))

    def reverse(self) -> MigrateOperation:
        return CreateOutboxNotifyOp(self.table_name)


@Operations.implementation_for(CreateOutboxNotifyOp)
def _create_notify(operations: Operations, operation: CreateOutboxNotifyOp) -> None:
    if operations.get_bind().dialect.name == "postgresql":
        operations.execute(create_notify_sql(operation.table_name))


@Operations.implementation_for(DropOutboxNotifyOp)
def _drop_notify(operations: Operations, operation: DropOutboxNotifyOp) -> None:
    if operations.get_bind().dialect.name == "postgresql":
        operations.execute(drop_notify_sql(operation.table_name))


@renderers.dispatch_for(CreateOutboxNotifyOp)
def _render_create(autogen_context: Any, op: CreateOutboxNotifyOp) -> str:
    return f"op.create_outbox_notify({op.table_name!r})"


@renderers.dispatch_for(DropOutboxNotifyOp)
def _render_drop(autogen_context: Any, op: DropOutboxNotifyOp) -> str:
    return f"op.drop_outbox_notify({op.table_name!r})"


def revision_processor(manifest: Manifest, notes: ReviewNotes) -> Any:
    """Alembic's ``process_revision_directives`` for a service: the outbox trigger, then
    :func:`replication.mirror.evolution.review` (notes, and refusal of unsafe type changes)."""

    def process(context: MigrationContext, revision: Any, directives: list[Any]) -> None:
        notify_writer(context, revision, directives)
        review(manifest, directives, notes)

    return process


notify_writer = rewriter.Rewriter()
"""Adds the NOTIFY trigger next to the outbox's create and drop in generated revisions."""


@notify_writer.rewrites(ops.CreateTableOp)
def _with_notify(context: MigrationContext, revision: Any, op: ops.CreateTableOp) -> Any:
    if op.table_name == OUTBOX_TABLE:
        return [op, CreateOutboxNotifyOp(op.table_name)]
    return op


@notify_writer.rewrites(ops.DropTableOp)
def _without_notify(context: MigrationContext, revision: Any, op: ops.DropTableOp) -> Any:
    if op.table_name == OUTBOX_TABLE:
        return [DropOutboxNotifyOp(op.table_name), op]
    return op
