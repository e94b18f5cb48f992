"""Building a consumer from its manifest: settings, connection, statements, AWS clients.

Everything heavy is deferred: boto3 is imported when the first poison record
must be dead-lettered or the first offloaded payload fetched, and SQLAlchemy
only when no pre-rendered statements file is found (``replication mirrors
render`` writes one per consumer at build time, so a Lambda never imports it).
"""

from __future__ import annotations

__all__ = [
    "OWNER_ACCOUNTS",
    "STATEMENTS_FILE",
    "ConsumerSettings",
    "LazyClients",
    "build_consumer",
    "build_runner",
    "dump_statements",
    "load_statements",
    "owner_accounts",
]

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from replication.consumer.core import Consumer
from replication.consumer.database import ConnectionSpec, connect, spec_for
from replication.consumer.dead_letters import SqsDeadLetters
from replication.errors import ConfigurationError
from replication.manifest import SERVICE_RE, Manifest
from replication.mirror.statements import MirrorStatements
from replication.payloads import PAYLOAD_MAX_BYTES
from replication.topology.naming import DEFAULT_PREFIX

if TYPE_CHECKING:
    from boto3.session import Session
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

    from replication.consumer.runner import EventSourceRunner, RunnerSettings
    from replication.logs import ProcessLog

STATEMENTS_FILE = "mirror-statements.{dialect}.json"
OWNER_ACCOUNTS = "REPLICATION_OWNER_ACCOUNTS"
ACCOUNT_RE = re.compile(r"[0-9]{12}")
_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class ConsumerSettings:
    """How a consumer runs, beyond what its manifest says."""

    prefix: str = DEFAULT_PREFIX
    statements: Path | None = None
    """Pre-rendered statements; default: ``mirror-statements.<dialect>.json`` by the manifest."""
    bulk: bool = True
    """PostgreSQL COPY for large batches; turn off behind RDS Proxy (temporary tables pin)."""
    log_level: str = "INFO"
    metrics: bool = True
    payload_bucket: str | None = None
    """Where offloaded payloads are read from (only there, under each owner's prefix)."""
    payload_max_bytes: int = PAYLOAD_MAX_BYTES
    owner_accounts: dict[str, str] = field(default_factory=dict)
    """The account of each owner service whose topics are in another account than the queues
    (an SNS envelope's topic is checked by its full ARN)."""

    @classmethod
    def from_environment(cls) -> ConsumerSettings:
        """From ``REPLICATION_PREFIX``, ``_STATEMENTS``, ``_APPLY_BULK``, ``_LOG_LEVEL``,
        ``_PAYLOAD_BUCKET``, ``_PAYLOAD_MAX_BYTES`` and ``_OWNER_ACCOUNTS``."""
        statements = os.environ.get("REPLICATION_STATEMENTS")
        return cls(
            owner_accounts=owner_accounts(os.environ.get(OWNER_ACCOUNTS, "")),
            payload_bucket=os.environ.get("REPLICATION_PAYLOAD_BUCKET") or None,
            payload_max_bytes=_positive("REPLICATION_PAYLOAD_MAX_BYTES", PAYLOAD_MAX_BYTES),
            prefix=os.environ.get("REPLICATION_PREFIX", DEFAULT_PREFIX),
            statements=Path(statements) if statements else None,
            bulk=os.environ.get("REPLICATION_APPLY_BULK", "true").lower() in _TRUE,
            log_level=os.environ.get("REPLICATION_LOG_LEVEL")
            or os.environ.get("POWERTOOLS_LOG_LEVEL")
            or "INFO",
        )


def owner_accounts(text: str) -> dict[str, str]:
    """``crm=111111111111,catalog=222222222222`` as a mapping; ConfigurationError if malformed."""
    accounts: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        service, sep, account = item.partition("=")
        if not sep or not SERVICE_RE.fullmatch(service) or not ACCOUNT_RE.fullmatch(account):
            raise ConfigurationError(
                f"{OWNER_ACCOUNTS}: {item[:80]!r} is not <service>=<12-digit account>; the "
                "variable lists owners whose topics are in another account, e.g. "
                "crm=111111111111,catalog=222222222222"
            )
        accounts[service] = account
    return accounts


def _positive(name: str, default: int) -> int:
    """A positive whole number from the environment variable ``name``."""
    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise ConfigurationError(f"{name} must be a positive whole number of bytes, not {text!r}")
    return value


class LazyClients:
    """boto3 clients created on first use (by :mod:`replication.aws_clients`), then reused."""

    def __init__(self, session: Session | None = None) -> None:
        self._session = session
        self._sqs: SQSClient | None = None
        self._s3: S3Client | None = None

    def session(self) -> Session:
        """The session both clients come from, created once (this imports boto3)."""
        if self._session is None:
            from replication.aws_clients import new_session

            self._session = new_session()
        return self._session

    def sqs(self) -> SQSClient:
        """The SQS client, created once."""
        if self._sqs is None:
            from replication.aws_clients import client

            self._sqs = client("sqs", self.session())
        return self._sqs

    def s3(self) -> S3Client:
        """The S3 client, created once."""
        if self._s3 is None:
            from replication.aws_clients import client

            self._s3 = client("s3", self.session())
        return self._s3


def dump_statements(manifest: Manifest, dialect: str) -> str:
    """The JSON statements file of ``manifest``'s mirrors on ``dialect`` (imports SQLAlchemy)."""
    from replication.mirror.render import statements_for

    rendered = [asdict(statements_for(d, dialect)) for d in manifest.mirrors]
    return json.dumps({"service": manifest.service, "mirrors": rendered}, indent=1) + "\n"


def load_statements(
    manifest: Manifest, dialect: str, path: Path | None = None
) -> dict[str, MirrorStatements]:
    """The statements of each mirror by entity: from a file if there is one, else rendered.

    A file must have been rendered for ``manifest``'s service, for ``dialect``,
    and for the mirrors as declared now; anything else is a ConfigurationError
    that says where the file came from and how to render the right one.
    """
    candidate = path or manifest.path.parent / STATEMENTS_FILE.format(dialect=dialect)
    origin = _statements_origin(manifest, path)
    if path is not None and not path.exists():
        raise ConfigurationError(f"statements file {path} ({origin}) does not exist")
    if candidate.exists():
        document = json.loads(candidate.read_text())
        rendered_for = document.get("service")
        if rendered_for is not None and rendered_for != manifest.service:
            raise ConfigurationError(
                f"statements file {candidate} ({origin}) was rendered for service "
                f"{rendered_for}, not {manifest.service}: each consumer needs its own; "
                + _render_hint(manifest, dialect, candidate, path)
            )
        loaded = [MirrorStatements.from_json(json.dumps(s)) for s in document["mirrors"]]
    else:
        from replication.mirror.render import statements_for

        loaded = [statements_for(d, dialect) for d in manifest.mirrors]
    by_entity = {s.entity: s for s in loaded}
    for declaration in manifest.mirrors:
        info = declaration.contract
        found = by_entity.get(info.entity)
        problem = None
        if found is None:
            problem = "has no statements for it"
        elif not found.rendered_for(dialect):
            problem = f"was rendered for {found.dialect}, the database is {dialect}"
        elif (found.table, found.contract_version) != (declaration.table, info.version):
            problem = f"was rendered for table {found.table} v{found.contract_version}"
        elif (
            set(found.columns[: len(declaration.fields)]) != set(declaration.fields)
            or len(found.columns) != len(declaration.fields) + 5
        ):
            problem = "was rendered for other fields"
        if problem:
            raise ConfigurationError(
                f"{candidate} ({origin}): mirror {declaration.table} ({info.label}) {problem}; "
                + _render_hint(manifest, dialect, candidate, path)
            )
    return by_entity


def _statements_source(path: Path | None) -> str | None:
    """What named a statements file: ``REPLICATION_STATEMENTS``, ``--statements``, or nothing."""
    if path is None:
        return None
    # ConsumerSettings keeps the path, not whether it came from the variable or from
    # ``replication consume --statements`` (which wins over it); the variable tells.
    named = os.environ.get("REPLICATION_STATEMENTS")
    return "REPLICATION_STATEMENTS" if named and Path(named) == path else "--statements"


def _statements_origin(manifest: Manifest, path: Path | None) -> str:
    """Where a statements file was named, for an error message."""
    source = _statements_source(path)
    if source is None:
        return f"the default beside {manifest.path}"
    if source == "--statements":
        return "named by replication consume --statements"
    return f"named by {source}"


def _render_hint(manifest: Manifest, dialect: str, target: Path, path: Path | None) -> str:
    """The command that renders ``manifest``'s statements file, and how to point at it."""
    import shlex  # only for this message, never on the handler's cold start

    name = STATEMENTS_FILE.format(dialect=dialect)
    # ``mirrors render`` writes <out>/<service>/<name>: keep <out> where ``target`` is.
    out = target.parent.parent if target.name == name else Path("build")
    written = out / manifest.service / name
    paths = shlex.quote(str(manifest.path))
    command = (
        f"replication mirrors render {paths} --service {manifest.service} "
        f"--dialect {dialect} --out {shlex.quote(str(out))}"
    )
    source = _statements_source(path)
    if written == target:
        return f"render it again with: {command}"
    if source is None:
        return f"render it with: {command}, then move {written} to {target}"
    if source == "--statements":
        return f"render it with: {command}, then pass --statements {written}"
    return f"render it with: {command}, then set {source}={written}"


def build_consumer(
    manifest: Manifest,
    settings: ConsumerSettings,
    *,
    spec: ConnectionSpec | None = None,
    clients: LazyClients | None = None,
) -> Consumer:
    """A consumer of ``manifest``'s mirrors, connecting on first use."""
    if not manifest.mirrors:
        raise ConfigurationError(f"service {manifest.service} mirrors no entity: nothing to apply")
    spec = spec or spec_for(manifest)
    clients = clients or LazyClients()
    resolved = spec
    return Consumer(
        manifest,
        connect=lambda: connect(resolved),
        dialect=spec.dialect,
        statements=load_statements(manifest, spec.dialect, settings.statements),
        dead_letters=SqsDeadLetters(clients.sqs),
        prefix=settings.prefix,
        s3_client=clients.s3,
        bulk=settings.bulk,
        payload_bucket=settings.payload_bucket,
        payload_max_bytes=settings.payload_max_bytes,
        owner_accounts=settings.owner_accounts,
    )


def build_runner(
    manifest: Manifest,
    settings: ConsumerSettings,
    runner_settings: RunnerSettings | None = None,
    *,
    spec: ConnectionSpec | None = None,
    clients: LazyClients | None = None,
    out: TextIO | None = None,
    log: ProcessLog | None = None,
) -> EventSourceRunner:
    """``replication consume``: the service's queues driving its apply handler.

    The runner says what it does through ``log``, or in sentences to ``out``, or not at all.
    """
    from replication.consumer.function import ApplyFunction
    from replication.consumer.observe import Observer
    from replication.consumer.runner import EventSourceRunner

    clients = clients or LazyClients()
    consumer = build_consumer(manifest, settings, spec=spec, clients=clients)
    function = ApplyFunction(
        consumer, Observer(manifest.service, level=settings.log_level, metrics=settings.metrics)
    )
    return EventSourceRunner.for_queue_names(
        function,
        clients.sqs(),
        list(consumer.routes),
        runner_settings,
        function_name=f"{manifest.service}-apply",
        out=out,
        log=log,
    )
