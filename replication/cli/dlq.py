"""``replication dlq``: on-call commands to see, replay, export, import and purge DLQs.

Exit codes: 0 done; 1 wrong declarations or input (unknown service, queue,
file); 2 wrong usage; 3 AWS or the database cannot be reached or refuses the
credentials; 4 done in part (some messages could not be moved or sent: they
are still where they were, and the output names them).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from replication.cli.commands import EXIT_INVALID, EXIT_OK, EXIT_USAGE, find_manifests
from replication.errors import ConfigurationError

EXIT_INCOMPLETE = 4

_DESCRIPTION = """\
See what is stuck in the dead-letter queues of consumer services, why, and put it back.
In the order on-call uses them: list, show, replay --dry-run, replay; export and purge
to clear what must not be replayed. AWS comes from the standard configuration
(AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL); the consumer's database, for the reasons
of messages SQS moved and for dry runs, from the variable its manifest names or
--database-url. See docs/runbook-dlq.md."""


# -- options ---------------------------------------------------------------------------


def _common(command: argparse.ArgumentParser, *, service_required: bool) -> None:
    command.add_argument(
        "--service",
        required=service_required,
        help="the consumer service" + ("" if service_required else " (default: every one)"),
    )
    command.add_argument(
        "--manifests", nargs="+", default=["examples"], help="manifest files or folders"
    )
    command.add_argument(
        "--prefix", help="resource name prefix (default $REPLICATION_PREFIX or dev)"
    )
    command.add_argument(
        "--database-url",
        help="the consumer's database (default: the variable its manifest names)",
    )


def _filters(command: argparse.ArgumentParser) -> None:
    group = command.add_argument_group("selecting messages (every given condition must hold)")
    group.add_argument("--entity", help="only this mirrored entity, e.g. crm.customer")
    group.add_argument("--key", help="only events of this key (the event's subject)")
    group.add_argument("--reason", help="only reasons containing this text (any case)")
    group.add_argument("--since", help="failed at or after: ISO 8601 time or 30m, 2h, 7d ago")
    group.add_argument("--until", help="failed at or before: ISO 8601 time or 30m, 2h, 7d ago")
    group.add_argument(
        "--message-id",
        action="append",
        default=[],
        help="only this message (its id in the DLQ or in the source queue); repeatable",
    )


def add_commands(groups: Any) -> None:
    """Add ``replication dlq ...`` to the command groups."""
    dlq = groups.add_parser(
        "dlq",
        help="dead-letter queues: list, show, replay, export, import, purge",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = dlq.add_subparsers(dest="command", required=True, metavar="COMMAND")

    listing = commands.add_parser(
        "list",
        help="every DLQ with its depth, oldest message and failure reasons",
        epilog="Example: replication dlq list --service orders",
    )
    _common(listing, service_required=False)
    listing.add_argument(
        "--sample",
        type=int,
        default=1000,
        help="messages read per DLQ for the reasons (default 1000)",
    )
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(func=cmd_list)

    show = commands.add_parser(
        "show",
        help="the dead-lettered change events, with reasons; pii fields masked",
        epilog="Example: replication dlq show --service orders --reason 'missing column' "
        "--since 2h",
    )
    _common(show, service_required=False)
    _filters(show)
    show.add_argument("--limit", type=int, default=50, help="messages shown (default 50)")
    show.add_argument("--show-pii", action="store_true", help="do not mask fields marked pii")
    show.add_argument("--json", action="store_true", help="one JSON object per line")
    show.set_defaults(func=cmd_show)

    replay = commands.add_parser(
        "replay",
        help="move messages back to their source queue, all or filtered",
        description="Move dead-lettered messages back to the queue they failed on. Each "
        "message is sent first and deleted from the DLQ only after the send succeeded, so an "
        "interrupted replay loses nothing (a message may then be in both queues; the mirror's "
        "version guard absorbs the duplicate). FIFO DLQs keep group order.",
        epilog="Example: replication dlq replay --service orders --reason 'missing column' "
        "--dry-run",
    )
    _common(replay, service_required=True)
    _filters(replay)
    replay.add_argument(
        "--dry-run",
        action="store_true",
        help="move nothing; say what each message would do now (needs the database)",
    )
    replay.add_argument("--rate", type=float, help="at most this many messages per second")
    replay.add_argument(
        "--visibility-timeout",
        type=int,
        default=60,
        help="seconds a message being moved stays hidden; after an interruption it "
        "reappears in the DLQ after this long (default 60)",
    )
    replay.add_argument(
        "--move-task",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="unfiltered replays of standard DLQs use an SQS message move task where the "
        "endpoint has one (default on)",
    )
    replay.add_argument("--json", action="store_true", help="machine-readable output")
    replay.set_defaults(func=cmd_replay)

    export = commands.add_parser(
        "export",
        help="write messages to a JSON Lines file (lossless), optionally removing them",
        epilog="Example: replication dlq export --service orders --out orders-dlq.jsonl",
    )
    _common(export, service_required=True)
    _filters(export)
    export.add_argument("--out", required=True, help="the JSON Lines file to write")
    export.add_argument(
        "--remove",
        action="store_true",
        help="delete each message from the DLQ once its line is on disk",
    )
    export.add_argument("--overwrite", action="store_true", help="replace an existing file")
    export.set_defaults(func=cmd_export)

    importing = commands.add_parser(
        "import",
        help="send the messages of an export file to a queue (default: the DLQ they came from)",
        epilog="Example: replication dlq import orders-dlq.jsonl",
    )
    importing.add_argument("file", help="a file written by 'replication dlq export'")
    importing.add_argument("--queue", help="send every message to this queue instead")
    importing.set_defaults(func=cmd_import)

    purge = commands.add_parser(
        "purge",
        help="delete messages from DLQs, after an export in the same command or --force",
        epilog="Example: replication dlq purge --service orders --export orders-dlq.jsonl",
    )
    _common(purge, service_required=True)
    _filters(purge)
    purge.add_argument("--export", metavar="FILE", help="export what is purged to this file")
    purge.add_argument("--force", action="store_true", help="purge without an export")
    purge.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    purge.set_defaults(func=cmd_purge)


# -- wiring ------------------------------------------------------------------------------


class _Context:
    """What every dlq command needs: manifests, DLQ targets, SQS, the consumer databases."""

    def __init__(self, args: argparse.Namespace) -> None:
        from replication.awsenv import locate
        from replication.dlq.inspect import targets
        from replication.dlq.queues import Queues
        from replication.topology.naming import DEFAULT_PREFIX

        self.args = args
        self.manifests = {m.service: m for m in find_manifests(args.manifests)}
        prefix = args.prefix or os.environ.get("REPLICATION_PREFIX", DEFAULT_PREFIX)
        self.targets = targets(
            list(self.manifests.values()),
            prefix,
            service=args.service,
            entity=getattr(args, "entity", None),
        )
        self.where = locate()
        self.queues = Queues(self.where.session.client("sqs"))
        self.notes: list[str] = []

    def spec(self, service: str) -> Any:
        """The consumer database's connection spec, or None where none is configured."""
        from replication.consumer.database import spec_from_environment, spec_from_url

        if self.args.database_url:
            return spec_from_url(self.args.database_url)
        manifest = self.manifests[service]
        if os.environ.get(manifest.database_url_env) or os.environ.get(
            "REPLICATION_DATABASE_SECRET_ARN"
        ):
            return spec_from_environment(manifest.database_url_env)
        return None

    def inspector(self, service: str) -> Any:
        """An inspector reading reasons from ``service``'s failures table when it can."""
        from replication.consumer.database import connect
        from replication.dlq.inspect import Inspector, database_lookup

        spec = self.spec(service)
        if spec is None:
            env = self.manifests[service].database_url_env
            self.notes.append(
                f"{service}: reasons of messages SQS moved after too many receives are in the "
                f"consumer's failures table; set {env} or pass --database-url to see them"
            )
            return Inspector(self.queues)
        return Inspector(self.queues, database_lookup(lambda: connect(spec), spec.dialect))

    def selection(self) -> Any:
        from replication.dlq.messages import Selection, parse_when

        args = self.args
        try:
            since = parse_when(args.since) if args.since else None
            until = parse_when(args.until) if args.until else None
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        return Selection(
            entity=args.entity,
            key=args.key,
            reason=args.reason,
            since=since,
            until=until,
            message_ids=frozenset(args.message_id),
        )

    def finish(self, inspectors: Sequence[Any] = ()) -> None:
        notes = list(self.notes)
        notes += [i.lookup_problem for i in inspectors if i.lookup_problem]
        for note in dict.fromkeys(notes):
            print(f"note: {note}", file=sys.stderr)


@contextmanager
def _progress(total: int | None, label: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr when it is a terminal."""
    from tqdm import tqdm

    with tqdm(total=total, desc=label, unit="msg", file=sys.stderr, disable=None) as bar:

        def advance(count: int) -> None:
            bar.update(count)

        yield advance


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    return f"{hours // 24}d{hours % 24:02d}h"


# -- list and show -----------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    from replication.dlq.inspect import summarise

    context = _Context(args)
    now = dt.datetime.now(dt.UTC)
    summaries = []
    inspectors: dict[str, Any] = {}
    for target in context.targets:
        inspector = inspectors.get(target.service) or context.inspector(target.service)
        inspectors[target.service] = inspector
        scan, described = inspector.read(target, limit=args.sample)
        summaries.append(summarise(target, scan, described))
    if args.json:
        print(json.dumps({"dlqs": [s.as_dict(now) for s in summaries]}, indent=2))
    else:
        print(f"{'DLQ':<48} {'entity':<20} {'depth':>6} {'in flight':>9} {'oldest':>8}")
        for summary in summaries:
            age = (now - summary.oldest).total_seconds() if summary.oldest else None
            print(
                f"{summary.target.dlq:<48} {summary.target.info.label:<20} "
                f"{summary.depth:>6} {summary.in_flight:>9} {_age(age):>8}"
            )
            for kind, reason, count in summary.reasons:
                print(f"    {count:>5}  {kind:<9}  {reason}")
            if not summary.complete and summary.depth:
                print(
                    f"    (read {summary.read} of {summary.depth}: "
                    + (
                        "a FIFO DLQ shows only the first messages of each group)"
                        if summary.target.fifo
                        else "raise --sample to read more)"
                    )
                )
        total = sum(s.depth for s in summaries)
        print(f"{len(summaries)} DLQ(s), {total} message(s)")
    context.finish(list(inspectors.values()))
    return EXIT_OK


def _show_record(item: Any, *, show_pii: bool) -> dict[str, Any]:
    from replication.dlq.messages import masked_document

    letter = item.letter
    document = masked_document(letter.body, item.info, show_pii=show_pii)
    record: dict[str, Any] = {
        "dlq": letter.dlq,
        "message_id": letter.message_id,
        "source_queue": item.source_queue,
        "source_message_id": letter.source_message_id,
        "entity": item.info.label,
        "key": item.subject,
        "kind": item.kind,
        "reason": item.reason,
        "receive_count": item.receive_count,
        "failed_at": item.when.isoformat() if item.when else None,
        "sent_at": letter.sent_at.isoformat() if letter.sent_at else None,
        "replays": letter.replays,
        "group_id": letter.group_id,
        "decodes": item.problem is None,
        "problem": item.problem,
        "offloaded": item.pointer,
        "event": document,
    }
    if document is None:
        record["body"] = letter.body if show_pii else None
    return record


def cmd_show(args: argparse.Namespace) -> int:
    context = _Context(args)
    selection = context.selection()
    shown = matched = 0
    inspectors = []
    incomplete = []
    for target in context.targets:
        inspector = context.inspector(target.service)
        inspectors.append(inspector)
        scan, described = inspector.read(target)
        if not scan.complete:
            incomplete.append(target.dlq)
        for item in described:
            if not selection.matches(item):
                continue
            matched += 1
            if shown >= args.limit:
                continue
            shown += 1
            record = _show_record(item, show_pii=args.show_pii)
            if args.json:
                print(json.dumps(record, ensure_ascii=False, default=str))
                continue
            print(
                f"{record['dlq']}  {record['message_id']}\n"
                f"  {record['entity']}  key {record['key']}  {record['kind']}  "
                f"receives {record['receive_count'] or '?'}  failed {record['failed_at']}"
                + (f"  replays {record['replays']}" if record["replays"] else "")
                + (f"  group {record['group_id']}" if record["group_id"] else "")
            )
            print(f"  reason: {record['reason']}")
            if record["offloaded"]:
                print(f"  event: offloaded to {record['offloaded']}")
            elif record["event"] is not None:
                text = json.dumps(record["event"], ensure_ascii=False, default=str)
                print(f"  event: {text[:2000]}{'…' if len(text) > 2000 else ''}")
            elif record.get("body") is not None:
                print(f"  body (not JSON): {record['body'][:2000]!r}")
            else:
                print("  body: not JSON, so pii cannot be masked; --show-pii prints it")
            print()
    if not args.json:
        more = f" (first {shown} shown; --limit)" if matched > shown else ""
        print(f"{matched} message(s) match{more}")
    for dlq in incomplete:
        context.notes.append(
            f"{dlq}: only the first messages of each FIFO group can be read without moving them"
        )
    context.finish(inspectors)
    return EXIT_OK


# -- replay --------------------------------------------------------------------------------


def cmd_replay(args: argparse.Namespace) -> int:
    if args.rate is not None and args.rate <= 0:
        print("error: --rate must be a positive number of messages per second", file=sys.stderr)
        return EXIT_USAGE
    context = _Context(args)
    if args.dry_run:
        return _dry_run(context)
    from replication.dlq.move import RateLimit, move_messages
    from replication.dlq.replay import replay_hand_over

    selection = context.selection()
    inspector = context.inspector(args.service)
    results = []
    incomplete = False
    for target in context.targets:
        depth = context.queues.depth(target.dlq)
        if selection.everything and args.move_task and not target.fifo:
            outcome = _move_task(context, target, args.rate, depth.visible)
            if outcome is not None:
                results.append(outcome)
                continue

        def select(letter: Any, target: Any = target) -> bool:
            return bool(selection.matches(inspector.describe(target, [letter])[0]))

        with _progress(depth.visible, target.dlq) as advance:
            report = move_messages(
                context.queues,
                target.dlq,
                replay_hand_over(context.queues, target.queue, fifo=target.fifo),
                select=select,
                fifo=target.fifo,
                visibility=args.visibility_timeout,
                rate=RateLimit(args.rate),
                progress=advance,
            )
        incomplete = incomplete or not report.complete
        results.append(
            {
                "dlq": target.dlq,
                "queue": target.queue,
                "how": "moved here",
                "moved": len(report.moved),
                "skipped": report.skipped,
                "held": report.held,
                "failed": report.failed,
                "not_deleted": report.not_deleted,
            }
        )
    _print_replay(results, as_json=args.json)
    context.finish([inspector])
    return EXIT_INCOMPLETE if incomplete else EXIT_OK


def _move_task(context: _Context, target: Any, rate: float | None, visible: int) -> Any:
    from replication.dlq.replay import start_move_task, watch_move_task

    if visible == 0:
        return {"dlq": target.dlq, "queue": target.queue, "how": "nothing to move", "moved": 0}
    task, why = start_move_task(
        _no_retry_sqs(context),
        context.queues.arn(target.dlq),
        context.queues.arn(target.queue),
        rate,
    )
    if task is None:
        context.notes.append(f"{target.dlq}: {why}; moved message by message instead")
        return None
    with _progress(visible, target.dlq) as advance:
        state = watch_move_task(
            context.queues.sqs, task, progress=lambda moved, _total: advance(moved)
        )
    failed = {} if state.get("Status") == "COMPLETED" else {"task": str(state)}
    return {
        "dlq": target.dlq,
        "queue": target.queue,
        "how": "SQS message move task",
        "moved": int(state.get("ApproximateNumberOfMessagesMoved", 0)),
        "skipped": 0,
        "held": 0,
        "failed": failed,
        "not_deleted": {},
    }


def _no_retry_sqs(context: _Context) -> Any:
    """An SQS client that does not retry: emulators answer the move task with HTTP 500."""
    from botocore.config import Config

    return context.where.session.client("sqs", config=Config(retries={"max_attempts": 1}))


def _print_replay(results: list[dict[str, Any]], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"replays": results}, indent=2))
        return
    for result in results:
        print(
            f"{result['dlq']} -> {result['queue']} ({result['how']}): moved {result['moved']}, "
            f"not selected {result.get('skipped', 0)}, held behind their FIFO group "
            f"{result.get('held', 0)}, failed {len(result.get('failed', {}))}"
        )
        for message_id, problem in result.get("failed", {}).items():
            print(f"    failed {message_id}: {problem} (still in the DLQ)")
        for message_id, problem in result.get("not_deleted", {}).items():
            print(
                f"    {message_id} was sent but could not be deleted from the DLQ ({problem}); "
                "a later replay sends it again and the version guard absorbs it"
            )
    moved = sum(r["moved"] for r in results)
    print(f"replayed {moved} message(s) from {len(results)} DLQ(s)")


def _dry_run(context: _Context) -> int:
    from replication.consumer.wiring import ConsumerSettings, build_consumer
    from replication.dlq.replay import predict

    args = context.args
    service = args.service
    spec = context.spec(service)
    if spec is None:
        env = context.manifests[service].database_url_env
        raise ConfigurationError(
            f"a dry run rehearses each message against {service}'s mirrors: set {env} or "
            "pass --database-url"
        )
    selection = context.selection()
    inspector = context.inspector(service)
    defaults = ConsumerSettings.from_environment()
    consumer = build_consumer(
        context.manifests[service],
        ConsumerSettings(prefix=_prefix(args), statements=defaults.statements, bulk=defaults.bulk),
        spec=spec,
    )
    counts: Counter[str] = Counter()
    records = []
    try:
        for target in context.targets:
            scan, described = inspector.read(target)
            chosen = [d for d in described if selection.matches(d)]
            for item, prediction in zip(
                chosen,
                predict(
                    consumer, chosen, region=context.where.region, account=context.where.account
                ),
                strict=True,
            ):
                counts[prediction.verdict] += 1
                records.append(
                    {
                        "dlq": target.dlq,
                        "message_id": prediction.message_id,
                        "key": item.subject,
                        "verdict": prediction.verdict,
                        "detail": prediction.detail,
                    }
                )
                if not args.json:
                    print(f"{target.dlq}  {prediction.message_id}  key {item.subject}")
                    print(f"    {prediction.text}")
            if not scan.complete:
                context.notes.append(
                    f"{target.dlq}: FIFO, only the first messages of each group were rehearsed"
                )
    finally:
        consumer.close()
    if args.json:
        print(json.dumps({"dry_run": records, "summary": dict(counts)}, indent=2))
    else:
        summary = ", ".join(f"{counts[v]} {v}" for v in ("apply", "stale", "invalid", "retry"))
        print(f"dry run, nothing moved: {summary}")
    context.finish([inspector])
    return EXIT_OK


def _prefix(args: argparse.Namespace) -> str:
    from replication.topology.naming import DEFAULT_PREFIX

    return str(args.prefix or os.environ.get("REPLICATION_PREFIX", DEFAULT_PREFIX))


# -- export, import, purge -------------------------------------------------------------------


def _open_new(path: Path, overwrite: bool) -> Any:
    if path.exists() and not overwrite:
        raise ConfigurationError(f"{path} exists; choose another file or pass --overwrite")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("w", encoding="utf-8")


def _export(context: _Context, path: Path, *, remove: bool, overwrite: bool) -> int:
    from replication.dlq.transfer import export_dlq

    selection = context.selection()
    inspector = context.inspector(context.args.service)
    written = removed = 0
    incomplete = False
    with _open_new(path, overwrite) as out:
        for target in context.targets:
            depth = context.queues.depth(target.dlq)
            with _progress(depth.visible, target.dlq) as advance:
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
            print(line)
    print(f"wrote {written} message(s) to {path}" + (f", removed {removed}" if remove else ""))
    context.finish([inspector])
    return EXIT_INCOMPLETE if incomplete else EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    context = _Context(args)
    return _export(context, Path(args.out), remove=args.remove, overwrite=args.overwrite)


def cmd_import(args: argparse.Namespace) -> int:
    import boto3

    from replication.dlq.archive import read_archive
    from replication.dlq.queues import Queues
    from replication.dlq.transfer import import_messages

    path = Path(args.file)
    messages = read_archive(path)
    queues = Queues(boto3.session.Session().client("sqs"))
    with _progress(len(messages), "import") as advance:
        report = import_messages(queues, messages, queue=args.queue, progress=advance)
    print(f"sent {report.sent} of {len(messages)} message(s) from {path}")
    if report.failed:
        failed_path = path.with_name(path.name + ".failed.jsonl")
        by_line = {m.line: m for m in messages}
        with failed_path.open("w", encoding="utf-8") as out:
            for line in sorted(report.failed):
                out.write(by_line[line].raw + "\n")
                print(f"    line {line}: {report.failed[line]}", file=sys.stderr)
        print(f"{len(report.failed)} not sent; their lines are in {failed_path}")
        return EXIT_INCOMPLETE
    return EXIT_OK


def cmd_purge(args: argparse.Namespace) -> int:
    if not args.export and not args.force:
        print(
            "error: purge deletes messages for good: pass --export FILE to keep a copy, or --force",
            file=sys.stderr,
        )
        return EXIT_USAGE
    context = _Context(args)
    depths = {t.dlq: context.queues.depth(t.dlq).total for t in context.targets}
    total = sum(depths.values())
    if total == 0:
        print("nothing to purge: the DLQs are empty")
        return EXIT_OK
    if not args.yes:
        if not sys.stdin.isatty():
            raise ConfigurationError("purge needs confirmation: run it in a terminal or pass --yes")
        listing = ", ".join(f"{name} ({count})" for name, count in depths.items())
        answer = input(f"Purge up to {total} message(s) from {listing}? Type 'purge' to confirm: ")
        if answer.strip() != "purge":
            print("not confirmed; nothing deleted")
            return EXIT_INVALID
    if args.export:
        return _export(context, Path(args.export), remove=True, overwrite=False)
    selection = context.selection()
    if selection.everything:
        for target in context.targets:
            context.queues.purge(target.dlq)
            print(f"{target.dlq}: purged ({depths[target.dlq]} message(s))")
        return EXIT_OK
    from replication.dlq.move import move_messages

    inspector = context.inspector(args.service)
    deleted = 0
    for target in context.targets:

        def select(letter: Any, target: Any = target) -> bool:
            return bool(selection.matches(inspector.describe(target, [letter])[0]))

        report = move_messages(
            context.queues, target.dlq, lambda _letters: {}, select=select, fifo=target.fifo
        )
        deleted += len(report.moved) - len(report.not_deleted)
        print(f"{target.dlq}: deleted {len(report.moved) - len(report.not_deleted)}")
    print(f"deleted {deleted} message(s)")
    context.finish([inspector])
    return EXIT_OK
