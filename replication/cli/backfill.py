"""``replication backfill``: send an entity's current rows to one consumer, resumably."""

from __future__ import annotations

__all__ = ["add_commands", "cmd_backfill"]

import argparse
import sys
from pathlib import Path

from replication.cli.exits import ExitCode
from replication.cli.options import Subcommands, json_option, prefix_option, print_json
from replication.cli.sync import consumer_queue, failures, pair_of, pair_options
from replication.errors import ConfigurationError


def add_commands(groups: Subcommands) -> None:
    """Add ``backfill``."""
    backfill = groups.add_parser(
        "backfill",
        help="send every current row of an entity to one consumer's queue (resumable)",
        description="Read the owner's rows in key order, page by page, and send each as a "
        "snapshot at its current version straight to the consumer's queue (other consumers "
        "see nothing). A checkpoint file records the last key sent: run the same command "
        "again to resume after an interruption. Safe while the owner keeps writing. Exit 4 "
        "when rows were skipped, not being valid states of the contract.",
        epilog="Example: replication backfill --entity crm.customer --consumer orders "
        "--where 'tier in gold,platinum' --rate 200",
    )
    pair_options(backfill)
    backfill.add_argument("--rate", type=float, help="at most this many events per second")
    backfill.add_argument("--page-size", type=int, default=500, help="rows per page (500)")
    backfill.add_argument(
        "--checkpoint",
        help="checkpoint file (default .replication/backfill-<consumer>-<entity>-v<N>.json)",
    )
    backfill.add_argument(
        "--restart", action="store_true", help="start from the first key, ignoring a checkpoint"
    )
    prefix_option(backfill)
    json_option(backfill)
    backfill.set_defaults(func=cmd_backfill)


def cmd_backfill(args: argparse.Namespace) -> ExitCode:
    """Backfill one consumer, resuming from its checkpoint."""
    with failures(f"backfilling {args.entity} to {args.consumer}"):
        return _backfill(args)


def _backfill(args: argparse.Namespace) -> ExitCode:
    from tqdm import tqdm

    from replication.dlq.move import RateLimit
    from replication.sync.backfill import Backfill, Checkpoint

    if args.page_size < 1 or (args.rate is not None and args.rate <= 0):
        print("error: --page-size and --rate must be positive", file=sys.stderr)
        return ExitCode.USAGE
    with pair_of(args, owner_url=args.owner_url, mirror=False) as pair:
        info = pair.declaration.contract
        queue = consumer_queue(pair, args)
        owner = pair.owner_engine.url.render_as_string(hide_password=True)
        path = Path(
            args.checkpoint
            or f".replication/backfill-{args.consumer}-{info.entity}-v{info.version}.json"
        )
        wanted = Checkpoint(
            path, info.entity, info.version, args.consumer, sorted(args.where), queue.url, owner
        )
        existing = None if args.restart else Checkpoint.load(path)
        if existing is not None and not existing.matches(wanted):
            raise ConfigurationError(
                f"the checkpoint {path} is of another backfill ({existing.consumer}, "
                f"{existing.entity} v{existing.version}, where {existing.where}, to "
                f"{existing.queue}, from {existing.owner}): pass --checkpoint for this one, "
                "or --restart"
            )
        if existing is not None and existing.done:
            if args.json:
                done = {"already_complete": True, "sent": existing.sent, "checkpoint": str(path)}
                print_json(done)
            else:
                print(
                    f"{path} says this backfill completed ({existing.sent:,} sent); "
                    "--restart runs it again"
                )
            return ExitCode.OK
        checkpoint = existing or wanted
        job = Backfill(
            pair.source,
            pair.owner_engine,
            queue,
            checkpoint,
            where=pair.where,
            page_size=args.page_size,
            rate=RateLimit(args.rate),
        )
        total = job.count()
        with tqdm(
            total=total,
            initial=min(checkpoint.sent, total),
            desc="backfill",
            unit="event",
            file=sys.stderr,
            disable=None,
        ) as bar:

            def advance(sent: int) -> None:
                bar.update(sent)

            job.on_page = advance
            summary = job.run()
    if args.json:
        print_json(
            {
                "entity": info.entity,
                "version": info.version,
                "consumer": args.consumer,
                "sent": summary.sent,
                "pages": summary.pages,
                "resumed_after": summary.resumed_after,
                "skipped": list(summary.skipped),
                "seconds": round(summary.seconds, 3),
                "checkpoint": str(path),
            }
        )
        return ExitCode.PARTIAL if summary.skipped else ExitCode.OK
    resumed = f", resumed after {summary.resumed_after:,}" if summary.resumed_after else ""
    print(
        f"backfilled {info.label} to {args.consumer}: sent {summary.sent:,} snapshot(s) in "
        f"{summary.pages} page(s){resumed}, {summary.seconds:.1f} s; checkpoint {path}"
    )
    if summary.skipped:
        print(
            f"{len(summary.skipped)} row(s) skipped, not valid {info.label} states:",
            file=sys.stderr,
        )
        for line in summary.skipped[:20]:
            print(f"  {line}", file=sys.stderr)
        return ExitCode.PARTIAL
    return ExitCode.OK
