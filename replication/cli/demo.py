"""``replication demo``: the whole flow on this machine."""

from __future__ import annotations

__all__ = ["add_commands", "cmd_demo"]

import argparse
import os
import sys

from replication.cli.exits import ExitCode
from replication.cli.options import Subcommands


def add_commands(groups: Subcommands) -> None:
    """Add ``demo``."""
    demo = groups.add_parser(
        "demo",
        help="run the whole flow on this machine: owners, relay, SNS/SQS, mirrors, DLQ",
        description="Provision the example topology on an in-process AWS emulator, run the "
        "owners (crm, catalog), relay, consume into orders' mirrors, check the mirrors "
        "against the owners, join orders with its mirrors in one SQL query, and dead-letter "
        "a poison message. SQLite files in a temporary folder unless a PostgreSQL URL is "
        "given. Exit 5 if a mirror ends up differing from its owner.",
        epilog="Example: replication demo --database-url postgresql://postgres@127.0.0.1/test",
    )
    demo.add_argument(
        "--database-url",
        default=os.environ.get("REPLICATION_DEMO_DATABASE_URL"),
        help="run on PostgreSQL (one schema per service) instead of SQLite "
        "(default $REPLICATION_DEMO_DATABASE_URL)",
    )
    demo.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> ExitCode:
    """Run the demo; 5 when a mirror differs from its owner at the end."""
    from replication.demo import run_demo

    equal = run_demo(database_url=args.database_url, out=sys.stdout) == 0
    return ExitCode.OK if equal else ExitCode.DIFFERS
