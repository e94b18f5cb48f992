"""``replication relay``: publish an owner's outbox to SNS."""

from __future__ import annotations

__all__ = ["add_commands", "cmd_relay"]

import argparse
import sys

from replication.cli.exits import ExitCode
from replication.cli.options import (
    Subcommands,
    find_manifests,
    manifests_option,
    prefix_option,
    selected,
)


def add_commands(groups: Subcommands) -> None:
    """Add ``relay``."""
    relay = groups.add_parser(
        "relay",
        help="publish an owner's outbox to SNS until stopped (SIGTERM/SIGINT)",
        description="Publish the outbox of an owner service to its SNS topics. The database "
        "URL comes from the environment variable its manifest names; AWS from the standard "
        "configuration (AWS_ENDPOINT_URL, AWS_REGION, profiles).",
        epilog="Example: CRM_DATABASE_URL=postgresql://... replication relay --service crm",
    )
    relay.add_argument("--service", required=True, help="the owner service to relay for")
    manifests_option(relay)
    relay.add_argument(
        "--once",
        action="store_true",
        help="drain once and exit (exit 4 when some rows could not be published)",
    )
    relay.add_argument(
        "--poll-interval",
        type=float,
        default=5.0,
        help="seconds between polls where there is no LISTEN/NOTIFY (default 5)",
    )
    prefix_option(relay)
    relay.add_argument("--payload-bucket", help="S3 bucket for events over 256 KiB")
    relay.add_argument("--batch-size", type=int, help="rows claimed per transaction (200)")
    relay.set_defaults(func=cmd_relay)


def cmd_relay(args: argparse.Namespace) -> ExitCode:
    """Relay until stopped, or drain once with --once (4 when some rows were not published)."""
    from replication.logs import ProcessLog
    from replication.outbox.runner import RelaySettings, build_relay, run_forever

    [manifest] = selected(find_manifests(args.manifests), args.service)
    log = ProcessLog.for_command(manifest.service, text_to=sys.stdout)
    defaults = RelaySettings.from_environment()
    settings = RelaySettings(
        prefix=args.prefix or defaults.prefix,
        payload_bucket=args.payload_bucket or defaults.payload_bucket,
        batch_size=args.batch_size or defaults.batch_size,
    )
    relay = build_relay(manifest, settings)
    if args.once:
        stats = relay.drain()
        pending = relay.pending()
        log.info(
            "relay drained",
            f"published {stats.published}, superseded {stats.superseded}, failed "
            f"{stats.failed}, pending {pending}",
            published=stats.published,
            superseded=stats.superseded,
            failed=stats.failed,
            pending=pending,
        )
        # Rows SNS refused stay in the outbox, retried by the next run: done in part.
        return ExitCode.PARTIAL if stats.failed else ExitCode.OK
    run_forever(relay, poll_interval=args.poll_interval, log=log)
    return ExitCode.OK
