"""``dlq replay``: back to the source queue, or a dry run saying what that would do."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from typing import TYPE_CHECKING, Any

from replication.cli.dlq.context import Context, progress
from replication.cli.exits import ExitCode
from replication.cli.options import prefix_of, print_json
from replication.errors import ConfigurationError

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


def cmd_replay(args: argparse.Namespace) -> ExitCode:
    if args.rate is not None and args.rate <= 0:
        print("error: --rate must be a positive number of messages per second", file=sys.stderr)
        return ExitCode.USAGE
    context = Context(args)
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

        with progress(depth.visible, target.dlq) as advance:
            report = move_messages(
                context.queues,
                target.dlq,
                replay_hand_over(context.queues, target.queue, fifo=target.fifo),
                select=inspector.selector(target, selection),
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
    return ExitCode.PARTIAL if incomplete else ExitCode.OK


def _move_task(context: Context, target: Any, rate: float | None, visible: int) -> Any:
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
    with progress(visible, target.dlq) as advance:
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


def _no_retry_sqs(context: Context) -> SQSClient:
    """An SQS client that does not retry: emulators answer the move task with HTTP 500."""
    from replication.aws_clients import client

    return client("sqs", context.where.session, max_attempts=1)


def _print_replay(results: list[dict[str, Any]], *, as_json: bool) -> None:
    if as_json:
        print_json({"replays": results})
        return
    for result in results:
        line = (
            f"{result['dlq']} -> {result['queue']} ({result['how']}): moved {result['moved']}, "
            f"not selected {result.get('skipped', 0)}, failed {len(result.get('failed', {}))}"
        )
        if result.get("held"):
            line += f", held behind an earlier message of their FIFO group {result['held']}"
        print(line)
        for message_id, problem in result.get("failed", {}).items():
            print(f"    failed {message_id}: {problem} (still in the DLQ)")
        for message_id, problem in result.get("not_deleted", {}).items():
            print(
                f"    {message_id} was sent but could not be deleted from the DLQ ({problem}); "
                "a later replay sends it again and the version guard absorbs it"
            )
    moved = sum(r["moved"] for r in results)
    print(f"replayed {moved} message(s) from {len(results)} DLQ(s)")


def _dry_run(context: Context) -> ExitCode:
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
        ConsumerSettings(
            prefix=prefix_of(args),
            statements=defaults.statements,
            bulk=defaults.bulk,
            payload_bucket=defaults.payload_bucket,
            payload_max_bytes=defaults.payload_max_bytes,
        ),
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
                    print(f"{target.dlq}  {prediction.message_id}  key {item.subject or '-'}")
                    print(f"    {prediction.text}")
            if not scan.complete:
                context.notes.append(
                    f"{target.dlq}: FIFO, only the first messages of each group were rehearsed"
                )
    finally:
        consumer.close()
    if args.json:
        print_json({"dry_run": records, "summary": dict(counts)})
    else:
        summary = ", ".join(f"{counts[v]} {v}" for v in ("apply", "stale", "invalid", "retry"))
        print(f"dry run, nothing moved: {summary}")
    context.finish([inspector])
    return ExitCode.OK
