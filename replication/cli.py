"""The ``replication`` command: parse, wire, call. Logic lives in the library.

Exit codes: 0 success, 1 invalid declarations (contracts, manifests),
2 wrong usage.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from replication.contracts import registry
from replication.errors import ConfigurationError
from replication.manifest import Manifest, load_manifests

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2

DEFAULT_CONTRACTS = "contracts"


def _load_contracts(modules: str) -> None:
    """Import the contract modules (comma-separated) so their contracts register."""
    for name in filter(None, (m.strip() for m in modules.split(","))):
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigurationError(f"cannot import contract module {name!r}: {exc}") from exc


def _manifests(paths: list[str]) -> list[Manifest]:
    found = [Path(p) for p in paths]
    missing = [str(p) for p in found if not p.exists()]
    if missing:
        raise ConfigurationError(f"no such file or folder: {', '.join(missing)}")
    manifests = load_manifests(found)
    if not manifests:
        raise ConfigurationError(f"no replication.yaml found under {', '.join(paths)}")
    return manifests


def _cmd_contracts_list(args: argparse.Namespace) -> int:
    for info in registry:
        key = ", ".join(info.key)
        print(f"{info.label}  (owner {info.owner}, key {key})")
        for spec in info.fields.values():
            flags = [f for f, on in (("pii", spec.pii), ("optional", spec.nullable)) if on]
            suffix = f"  [{', '.join(flags)}]" if flags else ""
            print(f"    {spec.name}: {spec.kind}{suffix}")
    return EXIT_OK


def _cmd_manifests_validate(args: argparse.Namespace) -> int:
    manifests = _manifests(args.paths)
    for manifest in manifests:
        owns = ", ".join(f"{o.entity} v{o.version}" for o in manifest.owns) or "nothing"
        mirrors = ", ".join(f"{m.contract.label} -> {m.table}" for m in manifest.mirrors)
        print(f"ok  {manifest.path}: service {manifest.service}")
        print(f"      owns: {owns}")
        print(f"      mirrors: {mirrors or 'nothing'}")
    return EXIT_OK


def _selected(manifests: list[Manifest], service: str | None) -> list[Manifest]:
    if service is None:
        return manifests
    chosen = [m for m in manifests if m.service == service]
    if not chosen:
        known = ", ".join(sorted(m.service for m in manifests))
        raise ConfigurationError(f"unknown service {service!r} (known: {known})")
    return chosen


def _cmd_mirrors_ddl(args: argparse.Namespace) -> int:
    import sqlalchemy as sa
    from sqlalchemy.schema import CreateTable

    from replication.mirror.render import sqlalchemy_dialect
    from replication.mirror.tables import mirror_table

    dialect = sqlalchemy_dialect(args.dialect)
    metadata = sa.MetaData()
    for manifest in _selected(_manifests(args.paths), args.service):
        for declaration in manifest.mirrors:
            table = mirror_table(declaration, metadata)
            print(f"-- {manifest.service}: mirror of {declaration.contract.label}")
            print(str(CreateTable(table).compile(dialect=dialect)).strip() + ";\n")
    return EXIT_OK


def _cmd_mirrors_render(args: argparse.Namespace) -> int:
    from replication.mirror.render import statements_for

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    for manifest in _selected(_manifests(args.paths), args.service):
        for declaration in manifest.mirrors:
            statements = statements_for(declaration, args.dialect)
            target = out / f"{manifest.service}.{declaration.table}.{statements.dialect}.json"
            target.write_text(statements.to_json(), encoding="utf-8")
            print(f"wrote {target}")
            count += 1
    print(f"{count} statement file(s) rendered")
    return EXIT_OK


def _cmd_relay(args: argparse.Namespace) -> int:
    from replication.outbox.runner import RelaySettings, build_relay, run_forever

    [manifest] = _selected(_manifests(args.manifests), args.service)
    defaults = RelaySettings.from_environment()
    settings = RelaySettings(
        prefix=args.prefix or defaults.prefix,
        payload_bucket=args.payload_bucket or defaults.payload_bucket,
        batch_size=args.batch_size or defaults.batch_size,
    )
    relay = build_relay(manifest, settings)
    if args.once:
        stats = relay.drain()
        print(
            f"published {stats.published}, failed {stats.failed}, held {stats.held}, "
            f"pending {relay.pending()}"
        )
        return EXIT_OK
    run_forever(relay, poll_interval=args.poll_interval, out=sys.stdout)
    return EXIT_OK


def _topology(args: argparse.Namespace) -> Any:
    from replication.topology.model import build_topology

    prefix = args.prefix or os.environ.get("REPLICATION_PREFIX", "dev")
    return build_topology(_manifests(args.manifests), prefix=prefix)


def _cmd_topology_plan(args: argparse.Namespace) -> int:
    from replication.topology.aws import AwsTopology

    plan = AwsTopology.from_environment().plan(_topology(args))
    if args.json:
        print(json.dumps({"changes": [c.as_dict() for c in plan.changes]}, indent=2))
    else:
        print(plan.render())
    return EXIT_OK


def _cmd_topology_apply(args: argparse.Namespace) -> int:
    from replication.topology.aws import AwsTopology

    topology = _topology(args)
    aws = AwsTopology.from_environment()
    plan = aws.plan(topology)
    print(plan.render())
    if not plan.pending:
        return EXIT_OK
    aws.apply(topology)
    print(f"applied {len(plan.pending)} change(s)")
    return EXIT_OK


def _cmd_topology_render(args: argparse.Namespace) -> int:
    from replication.topology.cloudformation import RenderSettings, render_templates

    settings = RenderSettings(
        provisioned_concurrency=args.provisioned_concurrency,
        snapstart=args.snapstart,
        keep_warm=args.keep_warm,
        batch_size=args.batch_size,
        max_concurrency=args.max_concurrency,
    )
    templates = render_templates(_manifests(args.manifests), settings)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for account, template in templates.items():
        target = out / f"replication-{account}.json"
        target.write_text(json.dumps(template, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {target} ({len(template['Resources'])} resources)")
    return EXIT_OK


def _cmd_topology_destroy(args: argparse.Namespace) -> int:
    from replication.topology.aws import AwsTopology, destroy

    topology = _topology(args)
    count = len(topology.topics) + 3 * len(topology.queues)
    if not args.yes:
        if not sys.stdin.isatty():
            raise ConfigurationError(
                "destroy needs confirmation: run it in a terminal or pass --yes"
            )
        answer = input(
            f"Delete {count} resources with prefix {topology.prefix!r}? "
            f"Type '{topology.prefix}' to confirm: "
        )
        if answer.strip() != topology.prefix:
            print("not confirmed; nothing deleted")
            return EXIT_INVALID
    removals = destroy(
        AwsTopology.from_environment(), topology, delete_messages=args.delete_messages
    )
    kept = [r for r in removals if not r.deleted]
    for removal in removals:
        state = "deleted" if removal.deleted else f"kept: {removal.reason}"
        print(f"{removal.kind:<12} {removal.name}  ({state})")
    print(f"{len(removals) - len(kept)} deleted, {len(kept)} kept")
    return EXIT_INVALID if kept else EXIT_OK


def _cmd_migrations(args: argparse.Namespace) -> int:
    from replication import migrations
    from replication.outbox.runner import database_url

    [manifest] = _selected(_manifests(args.manifests), args.service)
    url = args.url or database_url(manifest)
    versions = Path(args.versions) if args.versions else None
    config = migrations.alembic_config(manifest, url, versions=versions)
    if args.command == "generate":
        migrations.generate(config, args.message)
    elif args.command == "upgrade":
        migrations.upgrade(config, args.revision)
    elif args.command == "downgrade":
        migrations.downgrade(config, args.revision)
    else:
        migrations.check(config)
        print(f"{manifest.service}: the database matches the declarations")
    return EXIT_OK


def _manifests_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--manifests", nargs="+", default=["examples"], help="manifest files or folders"
    )


def _prefix_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--prefix", help="resource name prefix (default $REPLICATION_PREFIX or dev)"
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``replication`` command."""
    parser = argparse.ArgumentParser(
        prog="replication",
        description="Replicate owned entities into consumers' mirror tables.",
        epilog="Example: replication manifests validate examples/",
    )
    parser.add_argument(
        "--contracts",
        default=os.environ.get("REPLICATION_CONTRACTS", DEFAULT_CONTRACTS),
        help="comma-separated modules that declare the contracts "
        "(default: $REPLICATION_CONTRACTS or 'contracts')",
    )
    groups = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")

    contracts = groups.add_parser("contracts", help="inspect the registered contracts")
    contracts_cmds = contracts.add_subparsers(dest="command", required=True, metavar="COMMAND")
    listing = contracts_cmds.add_parser(
        "list",
        help="list every contract with its key and fields",
        epilog="Example: replication contracts list",
    )
    listing.set_defaults(func=_cmd_contracts_list)

    manifests = groups.add_parser("manifests", help="check service manifests")
    manifests_cmds = manifests.add_subparsers(dest="command", required=True, metavar="COMMAND")
    validate = manifests_cmds.add_parser(
        "validate",
        help="validate manifests against the contracts; every problem with its line",
        epilog="Example: replication manifests validate examples/orders/replication.yaml",
    )
    validate.add_argument("paths", nargs="+", help="manifest files, or folders to search")
    validate.set_defaults(func=_cmd_manifests_validate)

    mirrors = groups.add_parser("mirrors", help="mirror tables and their apply statements")
    mirrors_cmds = mirrors.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ddl = mirrors_cmds.add_parser(
        "ddl",
        help="print the CREATE TABLE of each mirror",
        epilog="Example: replication mirrors ddl examples/ --service orders --dialect postgresql",
    )
    render = mirrors_cmds.add_parser(
        "render",
        help="render the apply statements to JSON files, to ship with a function",
        epilog="Example: replication mirrors render examples/ --dialect postgresql --out build/",
    )
    for sub in (ddl, render):
        sub.add_argument("paths", nargs="+", help="manifest files, or folders to search")
        sub.add_argument("--service", help="only this service's mirrors")
        sub.add_argument(
            "--dialect",
            choices=["postgresql", "mysql", "mariadb", "sqlite"],
            default="postgresql",
            help="database dialect (default: postgresql)",
        )
    ddl.set_defaults(func=_cmd_mirrors_ddl)

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
        _manifests_option(sub)
        _prefix_option(sub)
    render_cfn = topology_cmds.add_parser(
        "render",
        help="write CloudFormation templates (one per AWS account) for the topology",
        epilog="Example: replication topology render --manifests examples --out build/cfn",
    )
    _manifests_option(render_cfn)
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
        "--max-concurrency", type=int, default=5, help="event source mapping concurrency (5)"
    )
    render_cfn.set_defaults(func=_cmd_topology_render)
    destroy = topology_cmds.add_parser(
        "destroy",
        help="delete the topology's resources, after confirmation; keeps queues with messages",
        epilog="Example: replication topology destroy --prefix test --yes",
    )
    _manifests_option(destroy)
    _prefix_option(destroy)
    destroy.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    destroy.add_argument(
        "--delete-messages",
        action="store_true",
        help="also delete queues and DLQs that still hold messages (they are lost)",
    )
    destroy.set_defaults(func=_cmd_topology_destroy)
    plan.set_defaults(func=_cmd_topology_plan)
    apply.set_defaults(func=_cmd_topology_apply)

    migrate = groups.add_parser(
        "migrations", help="Alembic migrations of a service's mirror and outbox tables"
    )
    migrate_cmds = migrate.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands = {
        "generate": "autogenerate a revision from the declarations (Alembic autogenerate)",
        "upgrade": "upgrade the database (default: to head)",
        "downgrade": "downgrade the database to a revision",
        "check": "exit 1 when the database and the declarations differ",
    }
    for name, summary in commands.items():
        sub = migrate_cmds.add_parser(
            name,
            help=summary,
            epilog=f"Example: replication migrations {name} --service orders",
        )
        sub.add_argument("--service", required=True, help="the service whose tables to migrate")
        _manifests_option(sub)
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
        sub.set_defaults(func=_cmd_migrations)

    relay = groups.add_parser(
        "relay",
        help="publish an owner's outbox to SNS until stopped (SIGTERM/SIGINT)",
        description="Publish the outbox of an owner service to its SNS topics. The database "
        "URL comes from the environment variable its manifest names; AWS from the standard "
        "configuration (AWS_ENDPOINT_URL, AWS_REGION, profiles).",
        epilog="Example: CRM_DATABASE_URL=postgresql://... replication relay --service crm",
    )
    relay.add_argument("--service", required=True, help="the owner service to relay for")
    _manifests_option(relay)
    relay.add_argument("--once", action="store_true", help="drain once and exit")
    relay.add_argument(
        "--poll-interval",
        type=float,
        default=5.0,
        help="seconds between polls where there is no LISTEN/NOTIFY (default 5)",
    )
    _prefix_option(relay)
    relay.add_argument("--payload-bucket", help="S3 bucket for events over 256 KiB")
    relay.add_argument("--batch-size", type=int, help="rows claimed per transaction (200)")
    relay.set_defaults(func=_cmd_relay)
    render.add_argument("--out", default="build/statements", help="output folder")
    render.set_defaults(func=_cmd_mirrors_render)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _load_contracts(args.contracts)
        code: int = args.func(args)
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except BrokenPipeError:  # output piped into head and friends
        sys.stderr.close()
        return EXIT_OK
    return code


if __name__ == "__main__":
    sys.exit(main())
