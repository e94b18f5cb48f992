"""The ``replication`` command: parse, wire, call. Logic lives in the library.

Exit codes: 0 success, 1 invalid declarations or input (contracts,
manifests, unknown services or queues), 2 wrong usage, 3 AWS or a database
cannot be reached or refuses the credentials, 4 done in part (``dlq``),
5 a mirror differs from its owner (``reconcile`` without ``--repair``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from replication.cli import commands, dlq, gate, init, package, sync
from replication.cli.commands import EXIT_INVALID, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE
from replication.contract_modules import CONTRACTS_ENV
from replication.errors import ConfigurationError, UnreachableError
from replication.package import ARCHITECTURES, PYTHON_VERSIONS

__all__ = [
    "EXIT_INVALID",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "build_parser",
    "main",
]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("replication")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``replication`` command."""
    parser = argparse.ArgumentParser(
        prog="replication",
        description="Replicate owned entities into consumers' mirror tables.",
        epilog="Example: replication manifests validate examples/",
    )
    parser.add_argument("--version", action="version", version=f"replication {_version()}")
    parser.add_argument(
        "--contracts",
        default=os.environ.get("REPLICATION_CONTRACTS"),
        help="comma-separated modules that declare the contracts, imported from the current "
        "folder, instead of those each manifest names in 'contracts' "
        "(default: $REPLICATION_CONTRACTS, else the manifests' own)",
    )
    groups = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")
    init.add_command(groups)
    package.add_command(groups)

    contracts = groups.add_parser(
        "contracts", help="inspect the contracts; lock them and check changes against the lock"
    )
    contracts_cmds = contracts.add_subparsers(dest="command", required=True, metavar="COMMAND")
    listing = contracts_cmds.add_parser(
        "list",
        help="list every contract with its key and fields",
        epilog="Example: replication contracts list",
    )
    commands.manifests_option(listing)
    listing.set_defaults(func=commands.cmd_contracts_list)
    gate.add_commands(contracts_cmds)

    manifests = groups.add_parser("manifests", help="check service manifests")
    manifests_cmds = manifests.add_subparsers(dest="command", required=True, metavar="COMMAND")
    validate = manifests_cmds.add_parser(
        "validate",
        help="validate manifests against the contracts; every problem with its line",
        epilog="Example: replication manifests validate examples/orders/replication.yaml",
    )
    validate.add_argument(
        "paths", nargs="*", default=["."], help="manifest files, or folders to search (here)"
    )
    validate.set_defaults(func=commands.cmd_manifests_validate)

    mirrors = groups.add_parser("mirrors", help="mirror tables and their apply statements")
    mirrors_cmds = mirrors.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ddl = mirrors_cmds.add_parser(
        "ddl",
        help="print the CREATE TABLE of each mirror",
        epilog="Example: replication mirrors ddl examples/ --service orders --dialect postgresql",
    )
    render = mirrors_cmds.add_parser(
        "render",
        help="render the apply statements of each consumer to <out>/<service>/"
        "mirror-statements.<dialect>.json, to ship beside its manifest in a function package "
        "(the apply handler then never imports SQLAlchemy)",
        epilog="Example: replication mirrors render examples/ --dialect postgresql --out build/",
    )
    for sub in (ddl, render):
        sub.add_argument(
            "paths", nargs="*", default=["."], help="manifest files, or folders to search (here)"
        )
        sub.add_argument("--service", help="only this service's mirrors")
        sub.add_argument(
            "--dialect",
            choices=["postgresql", "mysql", "mariadb", "sqlite"],
            default="postgresql",
            help="database dialect (default: postgresql)",
        )
    ddl.set_defaults(func=commands.cmd_mirrors_ddl)

    topology = groups.add_parser("topology", help="SNS topics, SQS queues and DLQs")
    topology_cmds = topology.add_subparsers(dest="command", required=True, metavar="COMMAND")
    plan = topology_cmds.add_parser(
        "plan",
        help="compare the manifests with the live account and show what apply would do",
        epilog="Example: AWS_ENDPOINT_URL=http://127.0.0.1:5000 replication topology plan --json",
    )
    plan.add_argument("--json", action="store_true", help="machine-readable output")
    apply = topology_cmds.add_parser(
        "apply",
        help="create or fix topics, queues, DLQs and subscriptions; deletes nothing",
        epilog="Example: replication topology apply --manifests examples --prefix prod",
    )
    for sub in (plan, apply):
        commands.manifests_option(sub)
        commands.prefix_option(sub)
    render_cfn = topology_cmds.add_parser(
        "render",
        help="write CloudFormation templates (one per AWS account) for the topology",
        epilog="Example: replication topology render --manifests examples --out build/cfn",
    )
    commands.manifests_option(render_cfn)
    render_cfn.add_argument(
        "--format", choices=["cloudformation"], default="cloudformation", help="output format"
    )
    render_cfn.add_argument("--out", default="build/cloudformation", help="output folder")
    render_cfn.add_argument(
        "--provisioned-concurrency",
        type=int,
        default=0,
        help="apply function environments kept initialised (default 0)",
    )
    render_cfn.add_argument(
        "--snapstart", action="store_true", help="SnapStart on the apply functions"
    )
    render_cfn.add_argument(
        "--keep-warm", metavar="SCHEDULE", help="ping apply functions, e.g. 'rate(5 minutes)'"
    )
    render_cfn.add_argument("--batch-size", type=int, default=10, help="SQS batch size (10)")
    render_cfn.add_argument(
        "--python",
        choices=list(PYTHON_VERSIONS),
        default="3.12",
        help="the functions' Lambda runtime (as replication package --python built them)",
    )
    render_cfn.add_argument(
        "--arch",
        choices=list(ARCHITECTURES),
        default="x86_64",
        help="the functions' architecture (as replication package --arch built them)",
    )
    render_cfn.add_argument(
        "--relay-mode",
        choices=["follow", "drain"],
        default="follow",
        help="follow: publish within a second of each commit (about $12 a month per owner "
        "at 256 MB); drain: at each minute's schedule (cents)",
    )
    render_cfn.add_argument(
        "--max-concurrency", type=int, default=5, help="event source mapping concurrency (5)"
    )
    render_cfn.set_defaults(func=commands.cmd_topology_render)
    destroy = topology_cmds.add_parser(
        "destroy",
        help="delete the topology's resources, after confirmation; keeps queues with messages",
        epilog="Example: replication topology destroy --prefix test --yes",
    )
    commands.manifests_option(destroy)
    commands.prefix_option(destroy)
    destroy.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    destroy.add_argument(
        "--delete-messages",
        action="store_true",
        help="also delete queues and DLQs that still hold messages (they are lost)",
    )
    destroy.set_defaults(func=commands.cmd_topology_destroy)
    plan.set_defaults(func=commands.cmd_topology_plan)
    apply.set_defaults(func=commands.cmd_topology_apply)

    migrate = groups.add_parser(
        "migrations", help="Alembic migrations of a service's mirror and outbox tables"
    )
    migrate_cmds = migrate.add_subparsers(dest="command", required=True, metavar="COMMAND")
    migration_commands = {
        "generate": "autogenerate a revision from the declarations (Alembic autogenerate)",
        "upgrade": "upgrade the database (default: to head)",
        "downgrade": "downgrade the database to a revision",
        "check": "exit 1 when the database and the declarations differ",
    }
    for name, summary in migration_commands.items():
        sub = migrate_cmds.add_parser(
            name,
            help=summary,
            epilog=f"Example: replication migrations {name} --service orders",
        )
        sub.add_argument("--service", required=True, help="the service whose tables to migrate")
        commands.manifests_option(sub)
        sub.add_argument("--url", help="database URL (default: the manifest's url_env variable)")
        sub.add_argument(
            "--versions", help="folder of the service's revisions (migrations/versions/<service>)"
        )
        if name == "generate":
            sub.add_argument("-m", "--message", required=True, help="revision message")
        if name == "upgrade":
            sub.add_argument("revision", nargs="?", default="head", help="target (head)")
        if name == "downgrade":
            sub.add_argument("revision", help="target revision, or base")
        sub.set_defaults(func=commands.cmd_migrations)

    relay = groups.add_parser(
        "relay",
        help="publish an owner's outbox to SNS until stopped (SIGTERM/SIGINT)",
        description="Publish the outbox of an owner service to its SNS topics. The database "
        "URL comes from the environment variable its manifest names; AWS from the standard "
        "configuration (AWS_ENDPOINT_URL, AWS_REGION, profiles).",
        epilog="Example: CRM_DATABASE_URL=postgresql://... replication relay --service crm",
    )
    relay.add_argument("--service", required=True, help="the owner service to relay for")
    commands.manifests_option(relay)
    relay.add_argument("--once", action="store_true", help="drain once and exit")
    relay.add_argument(
        "--poll-interval",
        type=float,
        default=5.0,
        help="seconds between polls where there is no LISTEN/NOTIFY (default 5)",
    )
    commands.prefix_option(relay)
    relay.add_argument("--payload-bucket", help="S3 bucket for events over 256 KiB")
    relay.add_argument("--batch-size", type=int, help="rows claimed per transaction (200)")
    relay.set_defaults(func=commands.cmd_relay)

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
    commands.manifests_option(consume)
    commands.prefix_option(consume)
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
        "--drain", action="store_true", help="stop when every queue is empty, instead of running"
    )
    consume.add_argument("--statements", help="pre-rendered statements file (mirrors render)")
    consume.add_argument(
        "--payload-bucket",
        help="S3 bucket of offloaded events, read only under each owner's events/<owner>/ "
        "(default $REPLICATION_PAYLOAD_BUCKET)",
    )
    consume.add_argument(
        "--log-level", help="per-record logs: INFO (every record), WARNING (failures only)"
    )
    consume.add_argument(
        "--metrics",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="print CloudWatch EMF metrics to stdout (default off outside Lambda)",
    )
    consume.set_defaults(func=commands.cmd_consume)

    demo = groups.add_parser(
        "demo",
        help="run the whole flow on this machine: owners, relay, SNS/SQS, mirrors, DLQ",
        description="Provision the example topology on an in-process AWS emulator, run the "
        "owners (crm, catalog), relay, consume into orders' mirrors, check the mirrors "
        "against the owners, join orders with its mirrors in one SQL query, and dead-letter "
        "a poison message. SQLite files in a temporary folder unless a PostgreSQL URL is given.",
        epilog="Example: replication demo --database-url postgresql://postgres@127.0.0.1/test",
    )
    demo.add_argument(
        "--database-url",
        default=os.environ.get("REPLICATION_DEMO_DATABASE_URL"),
        help="run on PostgreSQL (one schema per service) instead of SQLite "
        "(default $REPLICATION_DEMO_DATABASE_URL)",
    )
    demo.set_defaults(func=commands.cmd_demo)
    dlq.add_commands(groups)
    sync.add_commands(groups)
    render.add_argument("--out", default="build/statements", help="output folder")
    render.set_defaults(func=commands.cmd_mirrors_render)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    saved = os.environ.get(CONTRACTS_ENV)
    try:
        if args.contracts:
            commands.override_contracts(args.contracts)
        code: int = args.func(args)
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except UnreachableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except BrokenPipeError:  # output piped into head and friends
        sys.stderr.close()
        return EXIT_OK
    except Exception as exc:
        failure = _database_failure(exc)
        if failure is None:
            raise
        message, failed = failure
        print(f"error: {message}", file=sys.stderr)
        return failed
    finally:  # --contracts holds for this command only (main runs in-process in tests)
        if saved is None:
            os.environ.pop(CONTRACTS_ENV, None)
        else:
            os.environ[CONTRACTS_ENV] = saved
    return code


_DRIVER_HINTS = {
    "MySQLdb": "use mysql://, which means PyMySQL: pip install PyMySQL; or pip install mysqlclient",
    "pymysql": "pip install PyMySQL",
    "psycopg2": "pip install psycopg2-binary, or use postgresql+psycopg:// for psycopg 3",
    "psycopg": "pip install 'psycopg[binary]', or use postgresql+psycopg2:// for psycopg2",
}


def _database_failure(exc: Exception) -> tuple[str, int] | None:
    """The message and exit code of a database that cannot be used; None for other errors."""
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        import traceback

        loading = any(f.name == "import_dbapi" for f in traceback.extract_tb(exc.__traceback__))
        if exc.name in _DRIVER_HINTS or loading:
            hint = _DRIVER_HINTS.get(exc.name, f"pip install the package that provides {exc.name}")
            return f"the database driver {exc.name} is not installed ({hint})", EXIT_INVALID
    # Only an SQLAlchemy that is already loaded can have raised: the apply never imports it.
    errors = sys.modules.get("sqlalchemy.exc")
    if errors is None or not isinstance(exc, (errors.OperationalError, errors.InterfaceError)):
        return None
    # Failing to connect (no statement) or losing the connection; not a failing query.
    if exc.statement is not None and not exc.connection_invalidated:
        return None
    return (
        f"the database does not answer or refuses the credentials: {_first_line(exc.orig)}",
        EXIT_UNREACHABLE,
    )


def _first_line(error: BaseException) -> str:
    """The driver's message, first line only, passwords masked."""
    import re

    args = error.args
    if len(args) == 2 and isinstance(args[0], int):  # PyMySQL: (error number, text)
        text = f"{args[1]} ({args[0]})"
    else:
        text = str(error).strip() or type(error).__name__
    line = text.splitlines()[0]
    line = re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", line)
    return re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", line, flags=re.IGNORECASE)


if __name__ == "__main__":
    sys.exit(main())
