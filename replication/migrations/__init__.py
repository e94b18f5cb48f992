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
    "Revision",
    "alembic_config",
    "current",
    "describe_difference",
    "described",
    "differences",
    "downgrade",
    "environment_of",
    "generate",
    "revision_log",
    "revision_processor",
    "service_metadata",
    "show_current",
    "show_history",
    "stamp",
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
from replication.dialects import dialect_named
from replication.errors import ConfigurationError
from replication.manifest import Manifest
from replication.migrations.differences import describe_difference, differences, engine_of
from replication.migrations.revisions import Revision, described, revision_log
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
    url: str | None,
    *,
    versions: Path | None = None,
    script_location: Path | None = None,
) -> Config:
    """An Alembic configuration for one service and one database (None: no database).

    Without a database, only what reads the revisions alone works (``history``).
    """
    config = Config()
    script_location = script_location or environment_of(manifest, versions)
    folder = versions or script_location / "versions" / manifest.service
    if script_location == TEMPLATE and versions is None:
        raise ConfigurationError("revisions never go into the installed package: give versions")
    folder.mkdir(parents=True, exist_ok=True)
    config.set_main_option("script_location", str(script_location))
    config.set_main_option("version_locations", str(folder))
    if url is not None:
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


def upgrade(config: Config, revision: str = "head", *, sql: bool = False) -> None:
    """Upgrade the database to ``revision``; with ``sql``, print the DDL instead (offline)."""
    command.upgrade(config, revision, sql=sql)


def downgrade(config: Config, revision: str, *, sql: bool = False) -> None:
    """Downgrade the database to ``revision``; with ``sql``, print the DDL (``from:to``)."""
    command.downgrade(config, revision, sql=sql)


def stamp(config: Config, revision: str, *, sql: bool = False, purge: bool = False) -> None:
    """Record ``revision`` in the version table without running a migration.

    ``purge`` empties the version table first; ``sql`` prints the statements instead.
    """
    command.stamp(config, revision, sql=sql, purge=purge)


def show_current(config: Config, *, verbose: bool = False) -> None:
    """Print the revisions the database is at, as ``alembic current`` does."""
    command.current(config, verbose=verbose)


def show_history(
    config: Config,
    rev_range: str | None = None,
    *,
    verbose: bool = False,
    indicate_current: bool = False,
) -> None:
    """Print the revisions, newest first, as ``alembic history`` does.

    ``indicate_current`` reads the database to mark the revisions it is at.
    """
    command.history(config, rev_range, verbose=verbose, indicate_current=indicate_current)


def current(config: Config) -> tuple[str, ...]:
    """The revisions the database is at (none at base), read from the service's version table."""
    manifest: Manifest = config.attributes["replication.manifest"]
    engine = engine_of(config)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"version_table": f"alembic_version_{manifest.service}"}
            )
            return context.get_current_heads()
    finally:
        engine.dispose()


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
    if dialect_named(operations.migration_context.dialect.name).notifies:  # --sql: no bind
        operations.execute(create_notify_sql(operation.table_name))


@Operations.implementation_for(DropOutboxNotifyOp)
def _drop_notify(operations: Operations, operation: DropOutboxNotifyOp) -> None:
    if dialect_named(operations.migration_context.dialect.name).notifies:
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
