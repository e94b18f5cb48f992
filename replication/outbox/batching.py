"""Shaping claimed outbox rows into PublishBatch calls.

Calls keep id order, hold at most 10 entries and 256 KiB, and name a key at
most once; calls are grouped into waves that may be sent at once because no
key appears in two calls of a wave.
"""

from __future__ import annotations

__all__ = ["ClaimedRow", "batches", "group_id", "waves"]

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from replication.outbox.publisher import MAX_BATCH_ENTRIES, OutgoingMessage
from replication.payloads import SNS_MAX_BYTES


@dataclass
class ClaimedRow:
    id: int
    event_id: str
    entity: str
    contract_version: int
    op: str
    subject: str
    payload: str
    attempts: int

    @property
    def key(self) -> tuple[str, str]:
        return (self.entity, self.subject)


_GROUP_ID_RE = re.compile(r"[\x21-\x7e]{1,128}")


def group_id(subject: str) -> str:
    """The FIFO message group of a key: the subject, or its hash where SNS would refuse it."""
    if _GROUP_ID_RE.fullmatch(subject):
        return subject
    return hashlib.sha256(subject.encode()).hexdigest()


def waves(
    calls: list[tuple[str, list[tuple[ClaimedRow, OutgoingMessage]]]],
) -> Iterable[list[tuple[str, list[tuple[ClaimedRow, OutgoingMessage]]]]]:
    """Consecutive calls grouped so that no key is in two calls of one group."""
    wave: list[tuple[str, list[tuple[ClaimedRow, OutgoingMessage]]]] = []
    keys: set[tuple[str, str]] = set()
    for arn, batch in calls:
        batch_keys = {row.key for row, _ in batch}
        if wave and batch_keys & keys:
            yield wave
            wave, keys = [], set()
        wave.append((arn, batch))
        keys |= batch_keys
    if wave:
        yield wave


def batches(
    items: Iterable[tuple[ClaimedRow, OutgoingMessage]],
) -> Iterable[list[tuple[ClaimedRow, OutgoingMessage]]]:
    """PublishBatch calls in id order: at most 10 entries, 256 KiB, a key once per call."""
    batch: list[tuple[ClaimedRow, OutgoingMessage]] = []
    keys: set[tuple[str, str]] = set()
    size = 0
    for row, message in items:
        message_size = message.size()
        if batch and (
            len(batch) == MAX_BATCH_ENTRIES
            or row.key in keys
            or size + message_size > SNS_MAX_BYTES
        ):
            yield batch
            batch, keys, size = [], set(), 0
        batch.append((row, message))
        keys.add(row.key)
        size += message_size
    if batch:
        yield batch
