"""What every ``replication dlq`` command needs: manifests, DLQs, SQS, the databases."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from replication.cli.options import find_manifests, prefix_of
from replication.errors import ConfigurationError


class Context:
    """What every dlq command needs: manifests, DLQ targets, SQS, the consumer databases."""

    def __init__(self, args: argparse.Namespace) -> None:
        from replication.aws_clients import client
        from replication.awsenv import locate
        from replication.dlq.inspect import targets
        from replication.dlq.queues import Queues

        self.args = args
        self.manifests = {m.service: m for m in find_manifests(args.manifests)}
        self.targets = targets(
            list(self.manifests.values()),
            prefix_of(args),
            service=args.service,
            entity=getattr(args, "entity", None),
        )
        self.where = locate()
        self.queues = Queues(client("sqs", self.where.session))
        self.notes: list[str] = []

    def spec(self, service: str) -> Any:
        """The consumer database's connection spec, or None where none is configured."""
        from replication.consumer.database import spec_for, spec_from_url

        if self.args.database_url:
            return spec_from_url(self.args.database_url)
        manifest = self.manifests[service]
        if os.environ.get(manifest.database_url_env) or os.environ.get(
            manifest.database_secret_env
        ):
            return spec_for(manifest)
        return None

    def inspector(self, service: str) -> Any:
        """An inspector reading reasons from ``service``'s failures table when it can."""
        from replication.consumer.database import connect
        from replication.dlq.inspect import Inspector, database_lookup

        spec = self.spec(service)
        if spec is None:
            env = self.manifests[service].database_url_env
            self.notes.append(
                f"{service}: reasons of messages SQS moved after too many receives are in the "
                f"consumer's failures table; set {env} or pass --database-url to see them"
            )
            return Inspector(self.queues)
        return Inspector(self.queues, database_lookup(lambda: connect(spec), spec.dialect))

    def selection(self) -> Any:
        """The messages the command's filter options select."""
        from replication.dlq.messages import Selection, parse_when

        args = self.args
        try:
            since = parse_when(args.since) if args.since else None
            until = parse_when(args.until) if args.until else None
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        return Selection(
            entity=args.entity,
            key=args.key,
            reason=args.reason,
            since=since,
            until=until,
            message_ids=frozenset(args.message_id),
        )

    def finish(self, inspectors: Sequence[Any] = ()) -> None:
        """Print the notes gathered on the way (once each) to stderr."""
        notes = list(self.notes)
        notes += [i.lookup_problem for i in inspectors if i.lookup_problem]
        for note in dict.fromkeys(notes):
            print(f"note: {note}", file=sys.stderr)


@contextmanager
def progress(total: int | None, label: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr when it is a terminal."""
    from tqdm import tqdm

    with tqdm(total=total, desc=label, unit="msg", file=sys.stderr, disable=None) as bar:

        def advance(count: int) -> None:
            bar.update(count)

        yield advance


def age(seconds: float | None) -> str:
    """A duration as on-call reads it: 42m, 5h07m, 3d04h."""
    if seconds is None:
        return "-"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    return f"{hours // 24}d{hours % 24:02d}h"
