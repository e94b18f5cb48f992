"""``replication reconcile``: compare a consumer's mirror with its owner, and repair it."""

from __future__ import annotations

__all__ = ["add_commands", "cmd_reconcile"]

import argparse
import sys
from typing import Any

from replication.cli.exits import ExitCode
from replication.cli.options import Subcommands, json_option, prefix_option, print_json
from replication.cli.sync import consumer_queue, failures, pair_of, pair_options
from replication.sync.reconcile import DRIFT_KINDS, Reconciliation

_EXPLAINED = {
    "missing": "the owner has it, the mirror has no live row",
    "extra": "a live mirror row the owner no longer has",
    "older": "the mirror holds an older version",
    "differs": "same version, other content",
    "ahead": "the mirror holds a newer version than the owner",
}


def add_commands(groups: Subcommands) -> None:
    """Add ``reconcile``."""
    reconcile = groups.add_parser(
        "reconcile",
        help="compare a consumer's mirror with its owner; --repair republishes the differences",
        description="Compare the owner's table and the consumer's mirror inside each database "
        "(hashes per bucket of keys, then only the differing buckets' keys), and list the "
        "keys that are missing, extra, older, different or ahead. Exit 5 when there are "
        "differences and --repair was not given, or some it left alone.",
        epilog="Example: replication reconcile --entity crm.customer --consumer orders --repair",
    )
    pair_options(reconcile)
    reconcile.add_argument("--consumer-url", help="consumer's database URL (default: its url_env)")
    reconcile.add_argument(
        "--repair",
        action="store_true",
        help="send snapshots (and tombstones) of the differing keys to the consumer's queue",
    )
    json_option(reconcile)
    reconcile.add_argument(
        "--metrics", action="store_true", help="also print the drift as CloudWatch EMF metrics"
    )
    reconcile.add_argument("--buckets", type=int, default=4096, help="buckets of keys (4096)")
    reconcile.add_argument("--limit", type=int, default=10_000, help="keys listed at most (10000)")
    prefix_option(reconcile)
    reconcile.set_defaults(func=cmd_reconcile)


def cmd_reconcile(args: argparse.Namespace) -> ExitCode:
    """Compare, print, and repair when asked."""
    with failures(f"reconciling {args.entity} for {args.consumer}"):
        return _reconcile(args)


def _reconcile(args: argparse.Namespace) -> ExitCode:
    if args.buckets < 1 or args.limit < 1:
        print("error: --buckets and --limit must be positive", file=sys.stderr)
        return ExitCode.USAGE
    with pair_of(args, owner_url=args.owner_url, consumer_url=args.consumer_url) as pair:
        result = pair.compare(buckets=args.buckets, limit=args.limit)
        repaired = None
        if args.repair and result.total:
            from replication.sync.repair import repair

            repaired = repair(
                result, pair.source, pair.declaration, pair.owner_engine, consumer_queue(pair, args)
            )
    if args.metrics:
        from replication.sync.scheduled import emit_metrics

        emit_metrics(result, consumer=args.consumer, entity=args.entity)
    if args.json:
        print_json(_as_json(args, result, repaired))
    else:
        _print(args, pair, result, repaired)
    if result.total and repaired is None:
        return ExitCode.DIFFERS
    if repaired is not None and (repaired.untouched or result.total > len(result.drifts)):
        return ExitCode.DIFFERS  # some differences were not republished
    return ExitCode.OK


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
