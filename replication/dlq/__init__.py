"""On-call tooling for dead-letter queues: read, replay, export, import, purge.

Nothing here deletes a message from a DLQ before it was handed over (sent to
its source queue, or written to an export file); see :mod:`replication.dlq.move`.
"""

from __future__ import annotations

from replication.dlq.archive import ArchivedMessage, ArchiveWriteError, ExportFile, read_archive
from replication.dlq.inspect import Inspector, Target, summarise, targets
from replication.dlq.messages import DeadLetter, Described, Selection, describe
from replication.dlq.move import MoveReport, RateLimit, move_messages
from replication.dlq.queues import Queues
from replication.dlq.replay import Prediction, predict, replay_hand_over
from replication.dlq.transfer import export_dlq, import_messages

__all__ = [
    "ArchiveWriteError",
    "ArchivedMessage",
    "DeadLetter",
    "Described",
    "ExportFile",
    "Inspector",
    "MoveReport",
    "Prediction",
    "Queues",
    "RateLimit",
    "Selection",
    "Target",
    "describe",
    "export_dlq",
    "import_messages",
    "move_messages",
    "predict",
    "read_archive",
    "replay_hand_over",
    "summarise",
    "targets",
]
