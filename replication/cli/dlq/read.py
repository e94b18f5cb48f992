"""``dlq list`` and ``dlq show``: what is stuck and why, read without consuming."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from typing import Any

from replication.cli.dlq.context import Context, age
from replication.cli.exits import ExitCode


def cmd_list(args: argparse.Namespace) -> ExitCode:
    """Every DLQ with its depth, oldest message and reasons."""
    from replication.dlq.inspect import summarise

    context = Context(args)
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
            seconds = (now - summary.oldest).total_seconds() if summary.oldest else None
            print(
                f"{summary.target.dlq:<48} {summary.target.info.label:<20} "
                f"{summary.depth:>6} {summary.in_flight:>9} {age(seconds):>8}"
            )
            for kind, reason, count in summary.reasons:
                print(f"    {count:>5}  {kind:<9}  {reason}")
            if summary.sender_reasons:
                print(
                    f"    ({summary.sender_reasons} moved by SQS carry a replication.reason set "
                    "by their sender, not by the consumer: dlq show prints it apart)"
                )
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
    return ExitCode.OK


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
        "sender_reason": item.sender_reason,
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


def cmd_show(args: argparse.Namespace) -> ExitCode:
    """The selected dead-lettered events, pii masked unless --show-pii."""
    context = Context(args)
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
                f"  {record['entity']}  key {record['key'] or '-'}  {record['kind']}  "
                f"receives {record['receive_count'] or '?'}  failed {record['failed_at']}"
                + (f"  replays {record['replays']}" if record["replays"] else "")
                + (f"  group {record['group_id']}" if record["group_id"] else "")
            )
            print(f"  reason: {record['reason']}")
            if record["sender_reason"] is not None:
                print(
                    "  replication.reason set by its sender (untrusted, not the consumer's): "
                    f"{record['sender_reason']!r}"
                )
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
    return ExitCode.OK
