"""Event-driven replication of owned entities into consumers' mirror tables."""

from replication.contracts import Contract, ContractInfo, ContractRegistry, Pii, registry
from replication.errors import (
    ConfigurationError,
    InvalidEventError,
    ManifestError,
    ReplicationError,
    TransientError,
)
from replication.events import ChangeEvent, decode_event, deleted, encode_event, upserted

__all__ = [
    "ChangeEvent",
    "ConfigurationError",
    "Contract",
    "ContractInfo",
    "ContractRegistry",
    "InvalidEventError",
    "ManifestError",
    "Pii",
    "ReplicationError",
    "TransientError",
    "decode_event",
    "deleted",
    "encode_event",
    "registry",
    "upserted",
]
