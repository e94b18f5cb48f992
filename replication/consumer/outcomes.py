"""What happened to one record: the consumer's answer, the log line's and the metrics'."""

from __future__ import annotations

__all__ = ["DONE", "Outcome", "Status"]

from dataclasses import dataclass
from typing import Literal

Status = Literal["applied", "deleted", "stale", "collapsed", "dead-lettered", "retry"]
DONE: frozenset[str] = frozenset({"applied", "deleted", "stale", "collapsed", "dead-lettered"})


@dataclass(frozen=True)
class Outcome:
    """What happened to one record."""

    message_id: str
    status: Status
    reason: str = ""
    entity: str | None = None
    subject: str | None = None
    event_id: str | None = None
    lag_ms: float | None = None
    """Apply time minus the event's time, for records that reached the mirror."""

    @property
    def done(self) -> bool:
        """Whether SQS may delete the record (it applied, was stale, or was dead-lettered)."""
        return self.status in DONE
