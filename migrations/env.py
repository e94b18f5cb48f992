"""Alembic environment for the tables of one replication service.

Run through ``replication migrations ...``, which passes the service's
metadata in ``config.attributes``. Plain ``alembic`` works too:
``alembic -x manifest=examples/orders/replication.yaml upgrade head`` with the
database URL in the variable the manifest names.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from alembic import context
from sqlalchemy import engine_from_config, pool

from replication.migrations import revision_processor
from replication.mirror.evolution import ReviewNotes

config = context.config
manifest = config.attributes.get("replication.manifest")
metadata = config.attributes.get("replication.metadata")
if manifest is None:
    import contracts  # noqa: F401  (registers the contracts)
    from replication.manifest import load_manifest
    from replication.migrations import service_metadata

    manifest = load_manifest(Path(context.get_x_argument(as_dictionary=True)["manifest"]))
    metadata = service_metadata(manifest)
    config.set_main_option("sqlalchemy.url", os.environ[manifest.database_url_env])
    config.set_main_option(
        "version_locations", str(Path(__file__).parent / "versions" / manifest.service)
    )

assert metadata is not None

OPTIONS: dict[str, Any] = {
    "target_metadata": metadata,
    "version_table": f"alembic_version_{manifest.service}",
    "compare_type": True,
    "compare_server_default": False,
    "render_as_batch": True,  # SQLite alters tables by copying them
    "user_module_prefix": "replication.mirror.tables.",
    # The outbox's NOTIFY trigger; notes on added and dropped columns; unsafe type
    # changes refused (see replication.mirror.evolution).
    "process_revision_directives": revision_processor(
        manifest, config.attributes.setdefault("replication.notes", ReviewNotes())
    ),
    # Only this service's tables: other services may share the database.
    "include_name": lambda name, kind, parent: kind != "table" or name in metadata.tables,
}


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True, **OPTIONS)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = engine_from_config(
        config.get_section(config.config_ini_section, {})
        or {"sqlalchemy.url": config.get_main_option("sqlalchemy.url")},
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with engine.connect() as connection:
        context.configure(connection=connection, **OPTIONS)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
