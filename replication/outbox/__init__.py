"""The owner side: the transactional outbox and the relay to SNS."""

from replication.dburl import register_drivers
from replication.outbox.publisher import (
    InMemoryPublisher,
    OutgoingMessage,
    Publisher,
    PublishError,
    PublishResult,
    SnsPublisher,
)
from replication.outbox.record import record_delete, record_event, record_upsert
from replication.outbox.relay import Relay, RelayConfig, RelayStats, TopicRoute, TopicRouter
from replication.outbox.table import outbox_table

# An owner's own create_engine("mysql://...") then finds the driver the extras install.
register_drivers()

__all__ = [
    "InMemoryPublisher",
    "OutgoingMessage",
    "PublishError",
    "PublishResult",
    "Publisher",
    "Relay",
    "RelayConfig",
    "RelayStats",
    "SnsPublisher",
    "TopicRoute",
    "TopicRouter",
    "outbox_table",
    "record_delete",
    "record_event",
    "record_upsert",
]
