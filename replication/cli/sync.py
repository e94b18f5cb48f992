"""``replication backfill`` and ``replication reconcile``."""

from __future__ import annotations

__all__ = ["EXIT_DRIFT", "add_commands"]

import argparse
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from replication.cli.commands import (
    EXIT_OK,
    EXIT_USAGE,
    existing_paths,
    manifests_option,
    prefix_of,
    prefix_option,
)
from replication.cli.dlq.context import EXIT_INCOMPLETE
from replication.errors import ConfigurationError, UnreachableError
from replication.sync.reconcile import DRIFT_KINDS, Reconciliation

EXIT_DRIFT = 5
"""``reconcile``: the mirror differs from its owner (and was not repaired)."""

_EXPLAINED = {
    "missing": "the owner has it, the mirror has no live row",
    "extra": "a live mirror row the owner no longer has",
    "older": "the mirror holds an older version",
    "differs": "same version, other content",
    "ahead": "the mirror holds a newer version than the owner",
}


def _common(command: argparse.ArgumentParser) -> None:
    command.add_argument("--entity", required=True, help="the mirrored entity, e.g. crm.customer")
    command.add_argument("--consumer", required=True, help="the consumer service, e.g. orders")
    command.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="CONDITION",
        help="only rows where FIELD=VALUE (also != < <= > >=, or 'FIELD in A,B'); repeatable",
    )
    manifests_option(command)
    command.add_argument("--owner-url", help="owner's database URL (default: its url_env)")


def add_commands(groups: Any) -> None:
    """Add ``backfill`` and ``reconcile``."""
    backfill = groups.add_parser(
        "backfill",
        help="send every current row of an entity to one consumer's queue (resumable)",
        description="Read the owner's rows in key order, page by page, and send each as a "
        "snapshot at its current version straight to the consumer's queue (other consumers "
        "see nothing). A checkpoint file records the last key sent: run the same command "
        "again to resume after an interruption. Safe while the owner keeps writing.",
        epilog="Example: replication backfill --entity crm.customer --consumer orders "
        "--where 'tier in gold,platinum' --rate 200",
    )
    _common(backfill)
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
    backfill.set_defaults(func=cmd_backfill)

    reconcile = groups.add_parser(
        "reconcile",
        help="compare a consumer's mirror with its owner; --repair republishes the differences",
        description="Compare the owner's table and the consumer's mirror inside each database "
        "(hashes per bucket of keys, then only the differing buckets' keys), and list the "
        "keys that are missing, extra, older, different or ahead. Exit 5 when there are "
        "differences and --repair was not given.",
        epilog="Example: replication reconcile --entity crm.customer --consumer orders --repair",
    )
    _common(reconcile)
    reconcile.add_argument("--consumer-url", help="consumer's database URL (default: its url_env)")
    reconcile.add_argument(
        "--repair",
        action="store_true",
        help="send snapshots (and tombstones) of the differing keys to the consumer's queue",
    )
    reconcile.add_argument("--json", action="store_true", help="print the result as JSON")
    reconcile.add_argument(
        "--metrics", action="store_true", help="also print the drift as CloudWatch EMF metrics"
    )
    reconcile.add_argument("--buckets", type=int, default=4096, help="buckets of keys (4096)")
    reconcile.add_argument("--limit", type=int, default=10_000, help="keys listed at most (10000)")
    prefix_option(reconcile)
    reconcile.set_defaults(func=cmd_reconcile)


def _queue(pair: Any, args: argparse.Namespace) -> Any:
    from replication.awsenv import locate
    from replication.dlq.queues import Queues
    from replication.payloads import PayloadStore
    from replication.sync.send import ConsumerQueue
    from replication.topology.naming import queue_name

    where = locate()
    declaration = pair.declaration
    name = queue_name(
        pair.consumer.service,
        declaration.contract.entity,
        declaration.contract.version,
        prefix=prefix_of(args),
        fifo=declaration.fifo,
    )
    queues = Queues(where.session.client("sqs"))
    queues.url(name)  # a missing queue is said now, before any row is read
    bucket = os.environ.get("REPLICATION_PAYLOAD_BUCKET")
    payloads = (
        PayloadStore(where.session.client("s3"), bucket, owner=pair.owner.service)
        if bucket
        else None
    )
    return ConsumerQueue(queues, name, fifo=declaration.fifo, payloads=payloads)


@contextmanager
def _pair(
    args: argparse.Namespace,
    *,
    owner_url: str | None,
    consumer_url: str | None = None,
    mirror: bool = True,
) -> Iterator[Any]:
    """The owner and consumer of ``args``, with the --where conditions parsed."""
    from replication.sync.where import parse_condition
    from replication.sync.wiring import open_pair

    with open_pair(
        existing_paths(args.manifests),
        entity=args.entity,
        consumer=args.consumer,
        owner_url=owner_url,
        consumer_url=consumer_url,
        mirror=mirror,
    ) as pair:
        pair.where = [parse_condition(t, pair.declaration.contract) for t in args.where]
        yield pair


@contextmanager
def _failures(doing: str) -> Iterator[None]:
    """A database or AWS that does not answer is exit 3; a missing table is bad setup."""
    import sqlalchemy as sa

    from replication.awsenv import aws_errors

    try:
        with aws_errors(doing):
            yield
    except sa.exc.OperationalError as exc:
        raise UnreachableError(f"a database does not answer while {doing}: {exc.orig}") from exc
    except sa.exc.ProgrammingError as exc:
        first = str(exc.orig).strip().splitlines()[0]
        raise ConfigurationError(
            f"a database refused the query while {doing}: {first} (are the tables migrated?)"
        ) from exc


def cmd_reconcile(args: argparse.Namespace) -> int:
    """Compare, print, and repair when asked."""
    with _failures(f"reconciling {args.entity} for {args.consumer}"):
        return _reconcile(args)


def _reconcile(args: argparse.Namespace) -> int:
    if args.buckets < 1 or args.limit < 1:
        print("error: --buckets and --limit must be positive", file=sys.stderr)
        return EXIT_USAGE
    with _pair(args, owner_url=args.owner_url, consumer_url=args.consumer_url) as pair:
        result = pair.compare(buckets=args.buckets, limit=args.limit)
        repaired = None
        if args.repair and result.total:
            from replication.sync.repair import repair

            repaired = repair(
                result, pair.source, pair.declaration, pair.owner_engine, _queue(pair, args)
            )
    if args.metrics:
        from replication.sync.scheduled import emit_metrics

        emit_metrics(result, consumer=args.consumer, entity=args.entity)
    if args.json:
        print(json.dumps(_as_json(args, result, repaired), indent=2))
    else:
        _print(args, pair, result, repaired)
    if result.total and repaired is None:
        return EXIT_DRIFT
    if repaired is not None and (repaired.untouched or result.total > len(result.drifts)):
        return EXIT_DRIFT  # some differences were not republished
    return EXIT_OK


def _as_json(args: argparse.Namespace, result: Reconciliation, repaired: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "entity": args.entity,
        "consumer": args.consumer,
        "owner_rows": result.owner_rows,
        "mirror_rows": result.mirror_rows,
        "buckets": result.buckets,
        "differing_buckets": result.differing_buckets,
        "counts": result.counts,
        "drift": result.total,
        "drifts": [
            {
                "kind": d.kind,
                "key": d.subject,
                "owner_version": d.owner_version,
                "mirror_version": d.mirror_version,
                "fields": list(d.fields),
                "buried": d.buried,
            }
            for d in result.drifts
        ],
        "skipped_fields": list(result.skipped_fields),
        "unconfirmed": result.unconfirmed,
        "seconds": round(result.seconds, 3),
    }
    if repaired is not None:
        document["repaired"] = {
            "snapshots": repaired.snapshots,
            "tombstones": repaired.tombstones,
            "gone": repaired.gone,
            "untouched": repaired.untouched,
        }
    return document


def _print(args: argparse.Namespace, pair: Any, result: Reconciliation, repaired: Any) -> None:
    print(
        f"{pair.declaration.contract.label} in {args.consumer}'s {pair.declaration.table}: "
        f"{result.owner_rows:,} owner rows, {result.mirror_rows:,} live mirror rows, "
        f"{result.differing_buckets} of {result.buckets} buckets differ ({result.seconds:.2f} s)"
    )
    if result.skipped_fields:
        print(
            f"  not compared: {', '.join(result.skipped_fields)} (JSON text is normalised "
            "differently by the two databases)"
        )
    for kind in DRIFT_KINDS:
        print(f"  {kind:<8} {result.counts[kind]:>9,}  {_EXPLAINED[kind]}")
    for drift in result.drifts:
        versions = f"owner v{drift.owner_version or '-'}, mirror v{drift.mirror_version or '-'}"
        fields = f"; fields: {', '.join(drift.fields)}" if drift.fields else ""
        if drift.buried:
            fields = (
                "; the mirror holds a tombstone at that version: the owner reused a deleted "
                "key without continuing its version, and no repair can bring it back"
            )
        print(f"{drift.kind:<8} {drift.subject}  ({versions}{fields})")
    if len(result.drifts) < result.total:
        print(f"... {result.total - len(result.drifts):,} more (--limit)")
    if result.unconfirmed:
        print(
            f"  {result.unconfirmed:,} 'differs' beyond --limit are counted from hashes alone "
            "(not given the second look)"
        )
    if repaired is not None:
        print(
            f"repaired: sent {repaired.snapshots} snapshot(s) and {repaired.tombstones} "
            f"tombstone(s) to {args.consumer}'s queue; reconcile again once it has applied them"
        )
        if repaired.untouched:
            print(
                "  left alone (mirror ahead of its owner, or a tombstone above it): "
                + ", ".join(repaired.untouched)
            )
        if result.total > len(result.drifts):
            print(
                f"  {result.total - len(result.drifts):,} difference(s) beyond --limit were not "
                "republished: run it again"
            )
    elif result.total:
        print(f"{result.total:,} difference(s): --repair republishes them to {args.consumer}")
    else:
        print("the mirror equals its owner")


def cmd_backfill(args: argparse.Namespace) -> int:
    """Backfill one consumer, resuming from its checkpoint."""
    with _failures(f"backfilling {args.entity} to {args.consumer}"):
        return _backfill(args)


def _backfill(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from replication.dlq.move import RateLimit
    from replication.sync.backfill import Backfill, Checkpoint

    if args.page_size < 1 or (args.rate is not None and args.rate <= 0):
        print("error: --page-size and --rate must be positive", file=sys.stderr)
        return EXIT_USAGE
    with _pair(args, owner_url=args.owner_url, mirror=False) as pair:
        info = pair.declaration.contract
        queue = _queue(pair, args)
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
            print(
                f"{path} says this backfill completed ({existing.sent:,} sent); "
                "--restart runs it again"
            )
            return EXIT_OK
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
        return EXIT_INCOMPLETE
    return EXIT_OK
