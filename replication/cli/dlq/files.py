"""``dlq export``, ``dlq import`` and ``dlq purge``: files in, files out, nothing lost."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from replication.cli.dlq.context import Context, progress
from replication.cli.exits import ExitCode
from replication.cli.options import print_json
from replication.errors import ConfigurationError

if TYPE_CHECKING:  # for annotations only: each command imports the library when it runs
    from replication.dlq.archive import ArchiveWriteError, ExportFile


def _create(path: Path, *, overwrite: bool) -> ExportFile:
    """A new private export file, or a ConfigurationError saying why not."""
    from replication.dlq.archive import ExportFile, describe_os_error

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(f"cannot create {path.parent}: {describe_os_error(exc)}") from None
    try:
        return ExportFile.create(path, overwrite=overwrite)
    except FileExistsError:
        raise ConfigurationError(
            f"{path} exists; choose another file or pass --overwrite"
        ) from None
    except OSError as exc:
        raise ConfigurationError(
            f"cannot create {path} as a private file (mode 0600): {describe_os_error(exc)}"
        ) from None


def _export(context: Context, path: Path, *, remove: bool, overwrite: bool) -> ExitCode:
    from replication.dlq.archive import ArchiveWriteError
    from replication.dlq.transfer import export_dlq

    selection = context.selection()
    inspector = context.inspector(context.args.service)
    written = removed = 0
    incomplete = False
    failure: ArchiveWriteError | None = None
    as_json = context.args.json
    dlqs: list[dict[str, object]] = []
    out = _create(path, overwrite=overwrite)
    try:
        with out:
            for target in context.targets:
                depth = context.queues.depth(target.dlq)
                with progress(depth.visible, target.dlq) as advance:
                    report = export_dlq(
                        inspector,
                        target,
                        out,
                        selection=selection,
                        remove=remove,
                        progress=advance,
                    )
                written += report.written
                removed += report.removed
                line = f"{target.dlq}: exported {report.written}"
                if remove:
                    line += f", removed {report.removed} from the DLQ"
                    if report.move and report.move.not_deleted:
                        incomplete = True
                        line += f" ({len(report.move.not_deleted)} written but still in the DLQ)"
                if not report.complete:
                    line += " (FIFO: only the first messages of each group; --remove takes all)"
                if report.failure:
                    line += " (stopped: the file could not be written)"
                dlqs.append(
                    {
                        "dlq": target.dlq,
                        "exported": report.written,
                        "removed": report.removed,
                        "not_deleted": len(report.move.not_deleted) if report.move else 0,
                        "complete": report.complete,
                        "stopped": report.failure is not None,
                    }
                )
                if not as_json:
                    print(line)
                if report.failure:
                    failure = report.failure
                    break
    except ArchiveWriteError as exc:  # closing the file reported lost data
        failure = exc
    if as_json:
        print_json({"file": str(path), "written": written, "removed": removed, "dlqs": dlqs})
    else:
        print(f"wrote {written} message(s) to {path}" + (f", removed {removed}" if remove else ""))
    if out.unsynced:
        context.notes.append(
            f"{path} cannot be synced to disk (fsync: {out.unsynced}), so durability could "
            "not be confirmed: the lines were written"
            + (", and each message removed from its DLQ once written" if remove else "")
        )
    if failure is not None:
        _report_failure(failure, removed)
    context.finish([inspector])
    if failure is not None:
        # Done in part when messages already left their DLQ: the file is then the only copy.
        return ExitCode.PARTIAL if removed else ExitCode.INVALID
    return ExitCode.PARTIAL if incomplete else ExitCode.OK


def _report_failure(failure: ArchiveWriteError, removed: int) -> None:
    print(f"error: {failure}", file=sys.stderr)
    print(
        "error: the export stopped there; every message whose line was not confirmed on disk "
        "is still in its DLQ",
        file=sys.stderr,
    )
    if removed:
        print(
            f"error: the {removed} message(s) already removed are only in {failure.path}: keep "
            "it, and export the rest to another file",
            file=sys.stderr,
        )


def cmd_export(args: argparse.Namespace) -> ExitCode:
    """Write the selected messages to a file; remove them from their DLQs with --remove."""
    context = Context(args)
    return _export(context, Path(args.out), remove=args.remove, overwrite=args.overwrite)


def cmd_import(args: argparse.Namespace) -> ExitCode:
    """Send an export file's messages back, to their DLQs or to --queue."""
    from replication.aws_clients import client
    from replication.dlq.archive import ArchiveWriteError, read_archive
    from replication.dlq.queues import Queues
    from replication.dlq.transfer import import_messages

    path = Path(args.file)
    messages = read_archive(path)
    queues = Queues(client("sqs"))
    with progress(len(messages), "import") as advance:
        report = import_messages(queues, messages, queue=args.queue, progress=advance)
    document: dict[str, object] = {
        "file": str(path),
        "sent": report.sent,
        "messages": len(messages),
        "failed": {str(line): problem for line, problem in sorted(report.failed.items())},
        "failed_file": None,
    }
    if not args.json:
        print(f"sent {report.sent} of {len(messages)} message(s) from {path}")
    if not report.failed:
        if args.json:
            print_json(document)
        return ExitCode.OK
    failed_path = path.with_name(path.name + ".failed.jsonl")
    by_line = {m.line: m for m in messages}
    for line in sorted(report.failed):
        print(f"    line {line}: {report.failed[line]}", file=sys.stderr)
    try:
        with _create(failed_path, overwrite=True) as out:
            out.write(by_line[line].raw + "\n" for line in sorted(report.failed))
    except ArchiveWriteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if args.json:
            print_json(document)
        else:
            print(f"{len(report.failed)} not sent; their line numbers in {path} are above")
        return ExitCode.PARTIAL
    if args.json:
        print_json({**document, "failed_file": str(failed_path)})
    else:
        print(f"{len(report.failed)} not sent; their lines are in {failed_path}")
    return ExitCode.PARTIAL


def cmd_purge(args: argparse.Namespace) -> ExitCode:
    """Delete the selected messages: after an export in the same command, or with --force."""
    if not args.export and not args.force:
        print(
            "error: purge deletes messages for good: pass --export FILE to keep a copy, or --force",
            file=sys.stderr,
        )
        return ExitCode.USAGE
    context = Context(args)
    depths = {t.dlq: context.queues.depth(t.dlq).total for t in context.targets}
    total = sum(depths.values())
    if total == 0:
        if args.json:
            print_json({"deleted": 0, "dlqs": []})
        else:
            print("nothing to purge: the DLQs are empty")
        return ExitCode.OK
    if not args.yes:
        if not sys.stdin.isatty():
            raise ConfigurationError("purge needs confirmation: run it in a terminal or pass --yes")
        listing = ", ".join(f"{name} ({count})" for name, count in depths.items())
        answer = input(f"Purge up to {total} message(s) from {listing}? Type 'purge' to confirm: ")
        if answer.strip() != "purge":
            print("not confirmed; nothing deleted")
            return ExitCode.INVALID
    if args.export:
        return _export(context, Path(args.export), remove=True, overwrite=False)
    selection = context.selection()
    dlqs: list[dict[str, object]] = []
    if selection.everything:
        for target in context.targets:
            context.queues.purge(target.dlq)
            dlqs.append({"dlq": target.dlq, "deleted": depths[target.dlq]})
            if not args.json:
                print(f"{target.dlq}: purged ({depths[target.dlq]} message(s))")
        if args.json:  # SQS purges what it holds: the depth read before is approximate
            print_json({"deleted": total, "dlqs": dlqs})
        return ExitCode.OK
    from replication.dlq.move import move_messages

    inspector = context.inspector(args.service)
    deleted = kept = 0
    for target in context.targets:
        report = move_messages(
            context.queues,
            target.dlq,
            lambda _letters: {},
            select=inspector.selector(target, selection),
            fifo=target.fifo,
        )
        count = len(report.moved) - len(report.not_deleted)
        deleted += count
        kept += len(report.not_deleted)
        dlqs.append({"dlq": target.dlq, "deleted": count, "not_deleted": report.not_deleted})
        if not args.json:
            print(f"{target.dlq}: deleted {count}")
            for message_id, problem in report.not_deleted.items():
                print(f"    {message_id} could not be deleted ({problem}); it is still in the DLQ")
    if args.json:
        print_json({"deleted": deleted, "dlqs": dlqs})
    else:
        print(f"deleted {deleted} message(s)")
    context.finish([inspector])
    return ExitCode.PARTIAL if kept else ExitCode.OK
