"""The apply Lambda: ``replication.consumer.handler.lambda_handler``.

Configured by environment variables (the rendered template sets them):

- ``REPLICATION_MANIFEST``: the service's ``replication.yaml``; the contracts
  modules it names are imported from its ``python_path`` (its own folder by
  default), ``REPLICATION_CONTRACTS`` overriding them;
- ``REPLICATION_PREFIX``: the environment prefix of queue and topic names;
- ``<SERVICE>_DATABASE_SECRET_ARN`` (or the URL variable the manifest names),
  ``REPLICATION_DATABASE_IAM_AUTH``: see :mod:`replication.consumer.database`;
- ``REPLICATION_STATEMENTS``, ``REPLICATION_APPLY_BULK``, ``REPLICATION_LOG_LEVEL``,
  ``REPLICATION_PAYLOAD_BUCKET``, ``REPLICATION_PAYLOAD_MAX_BYTES``:
  see :class:`~replication.consumer.wiring.ConsumerSettings`.

Importing this module imports neither boto3 nor SQLAlchemy and opens no
connection: the consumer is built on the first invocation and reused while
the environment stays warm. A keep-warm ping (``{"replication": "keep-warm"}``)
is answered at once, without touching the database.
"""

from __future__ import annotations

__all__ = ["lambda_handler"]

from pathlib import Path
from typing import Any

from replication.consumer.function import ApplyFunction, is_keep_warm
from replication.consumer.observe import Observer

_function: ApplyFunction | None = None


def _build_from_environment() -> ApplyFunction:
    from replication.consumer.wiring import ConsumerSettings, build_consumer
    from replication.contract_modules import manifest_path
    from replication.manifest import load_manifest

    manifest = load_manifest(Path(manifest_path()))
    settings = ConsumerSettings.from_environment()
    consumer = build_consumer(manifest, settings)
    return ApplyFunction(consumer, Observer(manifest.service, level=settings.log_level))


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda entry point."""
    global _function
    if is_keep_warm(event):
        return {"warm": True}
    if _function is None:  # built on the first invocation, reused while warm
        _function = _build_from_environment()
    return _function(event, context)
