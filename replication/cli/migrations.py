"""``replication migrations``: a service's Alembic migrations, through Alembic's command API."""

from __future__ import annotations

__all__ = ["add_commands", "cmd_migrations"]

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from replication.cli.exits import ExitCode
from replication.cli.options import (
    Subcommands,
    find_manifests,
    json_option,
    manifests_option,
    print_json,
    selected,
)
from replication.errors import ConfigurationError

_COMMANDS = {
    "generate": "autogenerate a revision from the declarations (Alembic autogenerate)",
    "upgrade": "upgrade the database (default: to head); --sql prints the DDL instead",
    "downgrade": "downgrade the database to a revision; --sql prints the DDL instead",
    "check": "exit 5 when the database and the declarations differ",
    "current": "the revision the database is at",
    "history": "the service's revisions, newest first",
    "stamp": "record a revision in the version table without running migrations",
}


def add_commands(groups: Subcommands) -> None:
    """Add the ``migrations`` group: one command per Alembic command it runs."""
    group = groups.add_parser(
        "migrations", help="Alembic migrations of a service's mirror and outbox tables"
    )
    commands = group.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parsers = {}
    for name, summary in _COMMANDS.items():
        sub = commands.add_parser(
            name, help=summary, epilog=f"Example: replication migrations {name} --service orders"
        )
        sub.add_argument("--service", required=True, help="the service whose tables to migrate")
        manifests_option(sub)
        sub.add_argument("--url", help="database URL (default: the manifest's url_env variable)")
        sub.add_argument(
            "--versions", help="folder of the service's revisions (migrations/versions/<service>)"
        )
        sub.set_defaults(func=cmd_migrations)
        parsers[name] = sub
    parsers["generate"].add_argument("-m", "--message", required=True, help="revision message")
    parsers["upgrade"].add_argument("revision", nargs="?", default="head", help="target (head)")
    parsers["downgrade"].add_argument(
        "revision", help="target revision, or base; with --sql, FROM:TO"
    )
    parsers["stamp"].add_argument("revision", help="the revision to record (head, base, an id)")
    parsers["stamp"].add_argument(
        "--purge", action="store_true", help="empty the version table first"
    )
    for name in ("upgrade", "downgrade", "stamp"):
        output = parsers[name].add_mutually_exclusive_group()
        output.add_argument(
            "--sql",
            action="store_true",
            help="print the SQL to review, run nothing (Alembic's offline mode; the URL only "
            "chooses the dialect)",
        )
        json_option(output)
    for name in ("current", "history"):
        parsers[name].add_argument(
            "-v", "--verbose", action="store_true", help="each revision in full"
        )
        json_option(parsers[name])
    parsers["history"].add_argument(
        "-r", "--rev-range", help="only these revisions: [start]:[end], [start]: or :[end]"
    )
    parsers["history"].add_argument(
        "-i",
        "--indicate-current",
        action="store_true",
        help="read the database to mark the revision it is at",
    )
    json_option(parsers["check"])


def cmd_migrations(args: argparse.Namespace) -> ExitCode:
    """Run one migrations command for one service."""
    try:
        from alembic.util import CommandError

        from replication import migrations
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in ("alembic", "mako"):
            raise
        raise ConfigurationError(
            "migrations need Alembic: install the wheel with its cli extra, or pip install alembic"
        ) from None

    [manifest] = selected(find_manifests(args.manifests), args.service)
    config = migrations.alembic_config(
        manifest,
        _url(args, manifest),
        versions=Path(args.versions) if args.versions else None,
    )
    _say_each_step()
    try:
        return _RUN[args.command](args, manifest.service, config)
    except CommandError as exc:  # an unknown revision, a database behind its head, ...
        raise ConfigurationError(str(exc)) from exc


def _url(args: argparse.Namespace, manifest: Any) -> str | None:
    """--url, else the manifest's variable; None where the database is not read."""
    if args.url:
        return str(args.url)
    if args.command == "history" and not args.indicate_current:
        return None
    from replication.consumer.database import url_for

    return url_for(manifest)


def _say_each_step() -> None:
    # Alembic says each step it runs ("Running upgrade a -> b, message") through logging;
    # on stderr, so that stdout holds only the report, the SQL of --sql or the JSON.
    log = logging.getLogger("alembic.runtime.migration")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.addFilter(lambda record: record.getMessage().startswith("Running "))
        log.addHandler(handler)
        log.setLevel(logging.INFO)


def _generate(args: argparse.Namespace, service: str, config: Any) -> ExitCode:
    from replication import migrations

    migrations.generate(config, args.message)
    return ExitCode.OK


def _move(args: argparse.Namespace, service: str, config: Any) -> ExitCode:
    """upgrade, downgrade and stamp: the revision reached, or the SQL that would reach it."""
    from replication import migrations

    if args.command == "stamp":
        migrations.stamp(config, args.revision, sql=args.sql, purge=args.purge)
    else:
        move = migrations.upgrade if args.command == "upgrade" else migrations.downgrade
        move(config, args.revision, sql=args.sql)
    if args.sql:
        return ExitCode.OK
    # The revision reached, not the one asked for: "-1" or "head" say little.
    reached = migrations.current(config)
    if args.json:
        print_json({"service": service, "command": args.command, "current": list(reached)})
    else:
        done = {"upgrade": "upgraded", "downgrade": "downgraded", "stamp": "stamped"}
        print(f"{service}: {done[args.command]} to {', '.join(reached) or 'base'}")
    return ExitCode.OK


def _check(args: argparse.Namespace, service: str, config: Any) -> ExitCode:
    from replication import migrations

    found = migrations.differences(config)
    if args.json:
        print_json({"service": service, "matches": not found, "differences": found})
    elif found:
        print(
            f"{service}: the database differs from the declarations "
            "(generate and apply a migration):"
        )
        for line in found:
            print(f"  {line}")
    else:
        print(f"{service}: the database matches the declarations")
    return ExitCode.DIFFERS if found else ExitCode.OK


def _current(args: argparse.Namespace, service: str, config: Any) -> ExitCode:
    from replication import migrations

    if args.json:
        at = migrations.current(config)
        revisions = [r.as_dict() for r in migrations.described(config, at)]
        print_json({"service": service, "current": revisions})
        return ExitCode.OK
    if not migrations.current(config):
        print(f"{service}: base (no revision applied)")
        return ExitCode.OK
    migrations.show_current(config, verbose=args.verbose)
    return ExitCode.OK


def _history(args: argparse.Namespace, service: str, config: Any) -> ExitCode:
    from replication import migrations

    if not args.json:
        migrations.show_history(
            config, args.rev_range, verbose=args.verbose, indicate_current=args.indicate_current
        )
        return ExitCode.OK
    at = migrations.current(config) if args.indicate_current else None
    log = migrations.revision_log(config, args.rev_range, current=at)
    print_json({"service": service, "revisions": [r.as_dict() for r in log]})
    return ExitCode.OK


_RUN = {
    "generate": _generate,
    "upgrade": _move,
    "downgrade": _move,
    "stamp": _move,
    "check": _check,
    "current": _current,
    "history": _history,
}
