"""``replication consume``: apply a consumer's queues to its mirrors, outside Lambda."""

from __future__ import annotations

__all__ = ["add_commands", "cmd_consume"]

import argparse
import sys
from pathlib import Path

from replication.cli.exits import ExitCode
from replication.cli.options import (
    Subcommands,
    find_manifests,
    manifests_option,
    prefix_option,
    selected,
)


def add_commands(groups: Subcommands) -> None:
    """Add ``consume``."""
    consume = groups.add_parser(
        "consume",
        help="apply a consumer's queues to its mirrors until stopped (SIGTERM/SIGINT)",
        description="Long-poll the SQS queues of a consumer service and drive the apply "
        "handler with Lambda-shaped events, as the SQS event source mapping does: batch "
        "size, batching window, partial batch failures, visibility timeout, receive counts. "
        "For local work and for consumers running on ECS/EC2. The database URL comes from "
        "the environment variable the manifest names; AWS from the standard configuration.",
        epilog="Example: ORDERS_DATABASE_URL=postgresql://... replication consume --service orders",
    )
    consume.add_argument("--service", required=True, help="the consumer service")
    manifests_option(consume)
    prefix_option(consume)
    consume.add_argument("--batch-size", type=int, default=10, help="records per batch (10)")
    consume.add_argument(
        "--batching-window",
        type=float,
        default=0.0,
        help="seconds to wait for a batch to fill, 0-300 (0)",
    )
    consume.add_argument(
        "--visibility-timeout",
        type=int,
        help="seconds a received batch stays invisible (default: the queue's setting)",
    )
    consume.add_argument("--wait", type=int, default=10, help="long-poll seconds, 0-20 (10)")
    consume.add_argument(
        "--drain",
        action="store_true",
        help="stop when every queue is empty, instead of running (exit 4 when some records "
        "were left on their queue for retry)",
    )
    consume.add_argument("--statements", help="pre-rendered statements file (mirrors render)")
    consume.add_argument(
        "--payload-bucket",
        help="S3 bucket of offloaded events, read only under each owner's events/<owner>/ "
        "(default $REPLICATION_PAYLOAD_BUCKET)",
    )
    consume.add_argument(
        "--log-level",
        help="INFO (every record), WARNING (failures only); default REPLICATION_LOG_LEVEL, "
        "else POWERTOOLS_LOG_LEVEL, else INFO",
    )
    consume.add_argument(
        "--metrics",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="print CloudWatch EMF metrics to stdout (default off outside Lambda)",
    )
    consume.set_defaults(func=cmd_consume)


def cmd_consume(args: argparse.Namespace) -> ExitCode:
    """Consume until stopped, or until every queue is empty with --drain."""
    from replication.consumer.runner import RunnerSettings
    from replication.consumer.wiring import ConsumerSettings, build_runner
    from replication.logs import ProcessLog

    [manifest] = selected(find_manifests(args.manifests), args.service)
    defaults = ConsumerSettings.from_environment()
    settings = ConsumerSettings(
        prefix=args.prefix or defaults.prefix,
        statements=Path(args.statements) if args.statements else defaults.statements,
        bulk=defaults.bulk,
        log_level=args.log_level or defaults.log_level,
        metrics=args.metrics,
        payload_bucket=args.payload_bucket or defaults.payload_bucket,
        payload_max_bytes=defaults.payload_max_bytes,
    )
    try:
        runner_settings = RunnerSettings(
            batch_size=args.batch_size,
            batching_window=args.batching_window,
            visibility_timeout=args.visibility_timeout,
            wait_time=args.wait,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    log = ProcessLog.for_command(manifest.service, text_to=sys.stderr, level=settings.log_level)
    runner = build_runner(manifest, settings, runner_settings, log=log)
    if args.drain:
        stats = runner.drain()
        log.info("consumer drained", stats.line(), **stats.fields())
        # Records a transient failure left on their queue are retried by the next run, as
        # SQS makes them visible again: done in part.
        return ExitCode.PARTIAL if stats.retried or stats.failed_batches else ExitCode.OK
    runner.run()
    return ExitCode.OK
