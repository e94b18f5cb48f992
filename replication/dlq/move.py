"""Moving messages out of a DLQ without ever losing one.

The move is: receive (the message stays in the DLQ, invisible), hand it over
(send it to its source queue, or write it to an export file), and delete it
from the DLQ only once the hand-over succeeded. A process killed at any point
leaves every message in the DLQ (visible again after the visibility timeout)
or handed over, possibly both: a replayed duplicate is absorbed by the
mirror's version guard.

FIFO DLQs keep group order: a group's messages are handed over one round at a
time, in order, and once one of them is not selected or fails, the group's
later messages stay in the DLQ (SQS would not show them anyway while the
earlier one is held).
"""

from __future__ import annotations

__all__ = ["MoveReport", "RateLimit", "move_messages"]

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from replication.dlq.messages import DeadLetter
from replication.dlq.queues import MAX_BATCH, Queues

HandOver = Callable[[Sequence[DeadLetter]], dict[str, str]]
"""Hands messages over; returns problems by DLQ message id (the rest were handed over)."""


@dataclass
class MoveReport:
    """What a move did."""

    moved: list[str] = field(default_factory=list)
    """DLQ message ids handed over and deleted from the DLQ."""
    skipped: int = 0
    """Messages not selected (left in the DLQ)."""
    held: int = 0
    """FIFO messages left behind an earlier message of their group that stays."""
    failed: dict[str, str] = field(default_factory=dict)
    """Messages whose hand-over failed (left in the DLQ), with the problem."""
    not_deleted: dict[str, str] = field(default_factory=dict)
    """Handed over but still in the DLQ (the delete failed): they will come again."""

    @property
    def complete(self) -> bool:
        """Whether nothing failed."""
        return not self.failed and not self.not_deleted


class RateLimit:
    """At most ``per_second`` messages per second on average (None: no limit)."""

    def __init__(
        self,
        per_second: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if per_second is not None and per_second <= 0:
            raise ValueError("the rate must be a positive number of messages per second")
        self.per_second = per_second
        self._clock = clock
        self._sleep = sleep
        self._start: float | None = None
        self._count = 0

    @property
    def batch(self) -> int:
        """How many messages to take at once (a slow rate takes fewer)."""
        if self.per_second is None:
            return MAX_BATCH
        return max(1, min(MAX_BATCH, int(self.per_second)))

    def wait(self, count: int) -> None:
        """Sleep until ``count`` more messages keep the average under the rate."""
        if self.per_second is None:
            return
        now = self._clock()
        if self._start is None:
            self._start = now
        due = self._start + self._count / self.per_second
        if due > now:
            self._sleep(due - now)
        self._count += count


def move_messages(
    queues: Queues,
    dlq: str,
    hand_over: HandOver,
    *,
    select: Callable[[DeadLetter], bool] = lambda _: True,
    fifo: bool = False,
    visibility: int = 60,
    rate: RateLimit | None = None,
    progress: Callable[[int], None] = lambda _: None,
    stop: Callable[[], bool] = lambda: False,
) -> MoveReport:
    """Move the selected messages of ``dlq`` through ``hand_over``, then delete them."""
    rate = rate or RateLimit(None)
    report = MoveReport()
    left: dict[str, DeadLetter] = {}
    """Received but staying: released when the move ends."""
    blocked: set[str] = set()
    """FIFO groups whose next message stays (not selected, or its hand-over failed)."""
    failed_groups: set[str] = set()
    idle = 0
    try:
        while idle < 2 and not stop():
            batch = queues.receive(
                dlq, count=rate.batch, visibility=visibility, wait=1 if idle else 0
            )
            fresh = [m for m in batch if m.message_id not in left]
            for letter in batch:
                if letter.message_id in left:  # seen again after its visibility ran out
                    left[letter.message_id] = letter
            if not fresh:
                idle += 1
                continue
            idle = 0
            chosen: list[DeadLetter] = []
            for letter in fresh:
                group = letter.group_id if fifo else None
                if group is not None and group in blocked:
                    left[letter.message_id] = letter
                    report.held += 1
                elif select(letter):
                    chosen.append(letter)
                else:
                    left[letter.message_id] = letter
                    report.skipped += 1
                    if group is not None:
                        blocked.add(group)
            for round_ in _rounds(chosen, fifo):
                if fifo:
                    # Chosen before its group was blocked, but an earlier message of the
                    # group failed in a previous round: it must not overtake that one.
                    waiting = [m for m in round_ if m.group_id in failed_groups]
                    for letter in waiting:
                        left[letter.message_id] = letter
                        report.held += 1
                    round_ = [m for m in round_ if m.group_id not in failed_groups]
                if not round_:
                    continue
                rate.wait(len(round_))
                problems = hand_over(round_)
                done = [m for m in round_ if m.message_id not in problems]
                for letter in round_:
                    if letter.message_id in problems:
                        report.failed[letter.message_id] = problems[letter.message_id]
                        left[letter.message_id] = letter
                        if fifo and letter.group_id is not None:
                            blocked.add(letter.group_id)
                            failed_groups.add(letter.group_id)
                report.not_deleted.update(queues.delete(dlq, done))
                report.moved.extend(m.message_id for m in done)
                progress(len(done))
    finally:
        queues.release(dlq, left.values())
    return report


def _rounds(letters: list[DeadLetter], fifo: bool) -> list[list[DeadLetter]]:
    """Standard queues: one round. FIFO: round n holds the n-th message of each group, so a
    failure in a round never lets a later message of the group go before it."""
    if not fifo:
        return [letters] if letters else []
    by_group: dict[str | None, list[DeadLetter]] = {}
    for letter in letters:
        by_group.setdefault(letter.group_id, []).append(letter)
    depth = max((len(g) for g in by_group.values()), default=0)
    return [[g[n] for g in by_group.values() if len(g) > n] for n in range(depth)]
