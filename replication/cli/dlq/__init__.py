"""``replication dlq``: on-call commands to see, replay, export, import and purge DLQs.

Exit codes as for every command (:class:`replication.cli.exits.ExitCode`); 4,
done in part, when some messages could not be moved, sent or deleted: they are
still where they were, and the output names them.
"""

from __future__ import annotations

import argparse

from replication.cli.dlq.files import cmd_export, cmd_import, cmd_purge
from replication.cli.dlq.read import cmd_list, cmd_show
from replication.cli.dlq.replay import cmd_replay
from replication.cli.options import Subcommands, json_option, manifests_option, prefix_option

__all__ = ["add_commands"]

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
    manifests_option(command)
    prefix_option(command)
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


def add_commands(groups: Subcommands) -> None:
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
    json_option(listing, help="machine-readable output")
    listing.set_defaults(func=cmd_list)

    show = commands.add_parser(
        "show",
        help="the dead-lettered change events, with reasons; pii and undeclared fields masked",
        epilog="Example: replication dlq show --service orders --reason 'missing column' "
        "--since 2h",
    )
    _common(show, service_required=False)
    _filters(show)
    show.add_argument("--limit", type=int, default=50, help="messages shown (default 50)")
    show.add_argument(
        "--show-pii",
        action="store_true",
        help="show the event as it is: fields marked pii and fields its contract does not declare",
    )
    json_option(show, help="one JSON object per line")
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
    json_option(replay, help="machine-readable output")
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
    json_option(export)
    export.set_defaults(func=cmd_export)

    importing = commands.add_parser(
        "import",
        help="send the messages of an export file to a queue (default: the DLQ they came from)",
        epilog="Example: replication dlq import orders-dlq.jsonl",
    )
    importing.add_argument("file", help="a file written by 'replication dlq export'")
    importing.add_argument("--queue", help="send every message to this queue instead")
    json_option(importing)
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
    json_option(purge)
    purge.set_defaults(func=cmd_purge)
