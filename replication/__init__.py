"""Event-driven replication of owned entities into consumers' mirror tables.

The small public API. Importing it loads pydantic and PyYAML, never
SQLAlchemy, boto3 or a database driver.
"""

from replication.contracts import Contract, ContractInfo, ContractRegistry, Pii, registry
from replication.conversions import conversion
from replication.errors import (
    ConfigurationError,
    InvalidEventError,
    ManifestError,
    ReplicationError,
    TransientError,
)
from replication.events import ChangeEvent, decode_event, deleted, encode_event, upserted
from replication.manifest import Manifest, MirrorDeclaration, load_manifest, load_manifests
from replication.mirror import ApplyResult, apply_changes
from replication.mirror.statements import MirrorStatements

__all__ = [
    "ApplyResult",
    "ChangeEvent",
    "ConfigurationError",
    "Contract",
    "ContractInfo",
    "ContractRegistry",
    "InvalidEventError",
    "Manifest",
    "ManifestError",
    "MirrorDeclaration",
    "MirrorStatements",
    "Pii",
    "ReplicationError",
    "TransientError",
    "apply_changes",
    "conversion",
    "decode_event",
    "deleted",
    "encode_event",
    "load_manifest",
    "load_manifests",
    "registry",
    "upserted",
]
