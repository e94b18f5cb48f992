"""What a service's Alembic ``env.py`` runs: ``run_migrations()``.

``replication migrations ...`` passes the service's manifest and metadata in
``config.attributes``. Plain ``alembic`` works too, with the manifest given as
``-x manifest=replication.yaml``: its contracts modules are imported as the
manifest names them and the URL is read from the variable it names.
"""

from __future__ import annotations

__all__ = ["run_migrations"]

from pathlib import Path
from typing import Any

from alembic import context
from sqlalchemy import engine_from_config, pool

from replication.consumer.database import url_for
from replication.dburl import engine_url
from replication.manifest import load_manifest
from replication.migrations import revision_processor, service_metadata
from replication.mirror.evolution import ReviewNotes


def _options() -> dict[str, Any]:
    config = context.config
    manifest = config.attributes.get("replication.manifest")
    metadata = config.attributes.get("replication.metadata")
    if manifest is None:  # plain alembic: -x manifest=path/to/replication.yaml
        arguments = context.get_x_argument(as_dictionary=True)
        if "manifest" not in arguments:
            raise SystemExit("give the service's manifest: alembic -x manifest=replication.yaml")
        manifest = load_manifest(Path(arguments["manifest"]))
        metadata = service_metadata(manifest)
        url = engine_url(url_for(manifest))
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    assert metadata is not None
    return {
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


def run_migrations() -> None:
    """Run Alembic's migrations for one service, online or offline (``--sql``)."""
    config = context.config
    options = _options()
    if context.is_offline_mode():
        context.configure(
            url=config.get_main_option("sqlalchemy.url"), literal_binds=True, **options
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = engine_from_config(
        config.get_section(config.config_ini_section, {})
        or {"sqlalchemy.url": config.get_main_option("sqlalchemy.url")},
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with engine.connect() as connection:
        context.configure(connection=connection, **options)
        with context.begin_transaction():
            context.run_migrations()
