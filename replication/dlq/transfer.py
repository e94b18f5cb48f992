"""Export a DLQ to a file (keeping or removing the messages) and import a file into a queue."""

from __future__ import annotations

__all__ = ["ExportReport", "ImportReport", "export_dlq", "import_messages"]

import hashlib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from replication.dlq.archive import ArchivedMessage, ArchiveWriteError, ExportFile, to_line
from replication.dlq.inspect import Inspector, Target
from replication.dlq.messages import DeadLetter, Described, Selection
from replication.dlq.move import MoveReport, move_messages
from replication.dlq.queues import Outgoing, Queues


@dataclass
class ExportReport:
    """What an export wrote."""

    written: int = 0
    """Lines confirmed on disk."""
    removed: int = 0
    complete: bool = True
    """False when a FIFO DLQ hid messages behind their group's head (export --remove sees all)."""
    move: MoveReport | None = None
    failure: ArchiveWriteError | None = None
    """The write that stopped the export: no message after the confirmed lines was removed."""


def export_dlq(
    inspector: Inspector,
    target: Target,
    out: ExportFile,
    *,
    selection: Selection,
    remove: bool = False,
    visibility: int = 60,
    progress: Callable[[int], None] = lambda _: None,
) -> ExportReport:
    """Write the selected messages of ``target``'s DLQ to ``out``, one JSON line each.

    With ``remove``, each message is deleted from the DLQ once its line is on
    disk (written and fsynced), so a kill loses nothing: it is in the file, the
    DLQ, or both. A failed write or fsync stops the export at once, and every
    message whose line was not confirmed stays in the DLQ (``failure`` says why).
    """
    report = ExportReport()
    if not remove:
        scan, described = inspector.read(target)
        chosen = [item for item in described if selection.matches(item)]
        try:
            for item in chosen:
                out.append([to_line(item)])
                progress(1)
            out.confirm()
        except ArchiveWriteError as exc:
            report.failure = exc
            return report
        report.written = len(chosen)
        report.complete = scan.complete
        return report

    kept: dict[str, Described] = {}

    def write(letters: Sequence[DeadLetter]) -> dict[str, str]:
        try:
            out.write([to_line(kept.pop(letter.message_id)) for letter in letters])
        except ArchiveWriteError as exc:
            # Reported as failed, the messages are not deleted; stop ends the move
            # after this batch and makes them visible in the DLQ again.
            report.failure = exc
            return {letter.message_id: f"not written to {out.path}" for letter in letters}
        report.written += len(letters)
        return {}

    report.move = move_messages(
        inspector.queues,
        target.dlq,
        write,
        select=inspector.selector(target, selection, keep=kept),
        fifo=target.fifo,
        visibility=visibility,
        progress=progress,
        stop=lambda: report.failure is not None,
    )
    report.removed = len(report.move.moved) - len(report.move.not_deleted)
    return report


@dataclass
class ImportReport:
    """What an import sent."""

    sent: int = 0
    failed: dict[int, str] = field(default_factory=dict)
    """Problems by line number."""


def import_messages(
    queues: Queues,
    messages: Sequence[ArchivedMessage],
    *,
    queue: str | None = None,
    progress: Callable[[int], None] = lambda _: None,
) -> ImportReport:
    """Send each message to ``queue`` (default: the DLQ it was exported from), in order.

    Bodies and attributes go unchanged. FIFO queues get the message's group and
    a fresh deduplication id (the original one may still be in SQS's
    five-minute deduplication window, which would drop the import silently).
    """
    report = ImportReport()
    run = uuid.uuid4().hex
    by_queue: dict[str, list[ArchivedMessage]] = {}
    for message in messages:
        by_queue.setdefault(queue or message.queue, []).append(message)
    for name, batch in by_queue.items():
        fifo = name.endswith(".fifo")
        queues.url(name)  # an unknown queue fails before anything is sent
        for start in range(0, len(batch), 10):
            chunk = batch[start : start + 10]
            outgoing = [
                Outgoing(
                    str(m.line),
                    m.body,
                    m.attributes,
                    (m.group_id or "imported") if fifo else None,
                    hashlib.sha256(f"{run}:{m.line}".encode()).hexdigest()[:64] if fifo else None,
                )
                for m in chunk
            ]
            problems = queues.send(name, outgoing)
            for message in chunk:
                problem = problems.get(str(message.line))
                if problem is None:
                    report.sent += 1
                else:
                    report.failed[message.line] = problem
            progress(len(chunk))
    return report
