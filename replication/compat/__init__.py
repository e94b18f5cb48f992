"""Contract compatibility: the lock file and the gate that classifies changes."""

from replication.compat.gate import (
    LOCK_FORMAT,
    Change,
    ConsumerUse,
    Report,
    compare,
    lock_document,
    read_lock,
)
from replication.compat.schema import Difference, contract_schema

__all__ = [
    "LOCK_FORMAT",
    "Change",
    "ConsumerUse",
    "Difference",
    "Report",
    "compare",
    "contract_schema",
    "lock_document",
    "read_lock",
]
