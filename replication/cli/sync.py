"""What ``backfill`` and ``reconcile`` share: an owner and a consumer, its queue, failures."""

from __future__ import annotations

__all__ = ["consumer_queue", "failures", "pair_of", "pair_options"]

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from replication.cli.options import existing_paths, manifests_option, prefix_of
from replication.errors import ConfigurationError, UnreachableError


def pair_options(command: argparse.ArgumentParser) -> None:
    """The options naming the entity, the consumer and the rows."""
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


def consumer_queue(pair: Any, args: argparse.Namespace) -> Any:
    """The consumer's queue of the pair's entity, said missing before any row is read."""
    from replication.aws_clients import client
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
    queues = Queues(client("sqs", where.session))
    queues.url(name)  # a missing queue is said now, before any row is read
    bucket = os.environ.get("REPLICATION_PAYLOAD_BUCKET")
    payloads = (
        PayloadStore(client("s3", where.session), bucket, owner=pair.owner.service)
        if bucket
        else None
    )
    return ConsumerQueue(queues, name, fifo=declaration.fifo, payloads=payloads)


@contextmanager
def pair_of(
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
def failures(doing: str) -> Iterator[None]:
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
