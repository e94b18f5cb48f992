"""The commands behind ``replication``: each parses nothing, wires, and calls the library."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from replication.contract_modules import (
    CONTRACTS_ENV,
    import_module,
    overriding_modules,
    prepend_path,
)
from replication.contracts import registry
from replication.errors import ConfigurationError
from replication.manifest import (
    Manifest,
    import_manifest_contracts,
    load_manifests,
    manifest_files,
)

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


def override_contracts(modules: str) -> None:
    """``--contracts``: these modules instead of the manifests' own, for this command.

    They are imported where a manifest is loaded, after its ``python_path``, as the
    functions do, with the current folder searched too.
    """
    os.environ[CONTRACTS_ENV] = modules
    prepend_path([Path.cwd()])


def manifests_option(
    command: argparse.ArgumentParser, help: str = "manifest files or folders"
) -> None:
    """``--manifests``: the manifest files or folders a command reads (default: here)."""
    command.add_argument(
        "--manifests",
        nargs="+",
        default=["."],
        help=f"{help} (default: the current folder, searched for replication.yaml)",
    )


def import_contracts(paths: list[str]) -> None:
    """Register the contracts the manifests under ``paths`` name (or --contracts names)."""
    found = existing_paths(paths)
    if not manifest_files(found) and not overriding_modules():
        # Nothing would register: a check would pass on nothing and a lock would be emptied.
        raise ConfigurationError(
            f"no replication.yaml found under {', '.join(paths)}: give --manifests, or the "
            "contracts modules with --contracts"
        )
    import_manifest_contracts(found)
    for name in overriding_modules() or []:
        problem = import_module(name)
        if problem is not None:
            raise ConfigurationError(
                f"cannot import contracts module {name!r} named by --contracts or "
                f"{CONTRACTS_ENV}: {problem}"
            )


def prefix_option(command: argparse.ArgumentParser) -> None:
    """``--prefix``: the topology's resource name prefix."""
    command.add_argument(
        "--prefix", help="resource name prefix (default $REPLICATION_PREFIX or dev)"
    )


def prefix_of(args: argparse.Namespace) -> str:
    """The topology's prefix: --prefix, else $REPLICATION_PREFIX, else the default."""
    from replication.topology.naming import DEFAULT_PREFIX

    return str(args.prefix or os.environ.get("REPLICATION_PREFIX", DEFAULT_PREFIX))


def existing_paths(paths: list[str]) -> list[Path]:
    """``paths`` as Paths; ConfigurationError naming those that do not exist."""
    found = [Path(p) for p in paths]
    missing = [str(p) for p in found if not p.exists()]
    if missing:
        raise ConfigurationError(f"no such file or folder: {', '.join(missing)}")
    return found


def find_manifests(paths: list[str]) -> list[Manifest]:
    manifests = load_manifests(existing_paths(paths))
    if not manifests:
        raise ConfigurationError(f"no replication.yaml found under {', '.join(paths)}")
    return manifests


def cmd_contracts_list(args: argparse.Namespace) -> int:
    import_contracts(args.manifests)
    for info in registry:
        key = ", ".join(info.key)
        print(f"{info.label}  (owner {info.owner}, key {key})")
        for spec in info.fields.values():
            flags = [f for f, on in (("pii", spec.pii), ("optional", spec.nullable)) if on]
            suffix = f"  [{', '.join(flags)}]" if flags else ""
            print(f"    {spec.name}: {spec.kind}{suffix}")
    return EXIT_OK


def cmd_manifests_validate(args: argparse.Namespace) -> int:
    manifests = find_manifests(args.paths)
    for manifest in manifests:
        owns = ", ".join(f"{o.entity} v{o.version}" for o in manifest.owns) or "nothing"
        mirrors = ", ".join(f"{m.contract.label} -> {m.table}" for m in manifest.mirrors)
        print(f"ok  {manifest.path}: service {manifest.service}")
        print(f"      owns: {owns}")
        print(f"      mirrors: {mirrors or 'nothing'}")
    return EXIT_OK


def selected(manifests: list[Manifest], service: str | None) -> list[Manifest]:
    if service is None:
        return manifests
    chosen = [m for m in manifests if m.service == service]
    if not chosen:
        known = ", ".join(sorted(m.service for m in manifests))
        raise ConfigurationError(f"unknown service {service!r} (known: {known})")
    return chosen


def cmd_mirrors_ddl(args: argparse.Namespace) -> int:
    import sqlalchemy as sa
    from sqlalchemy.schema import CreateTable

    from replication.mirror.render import sqlalchemy_dialect
    from replication.mirror.tables import mirror_table

    dialect = sqlalchemy_dialect(args.dialect)
    metadata = sa.MetaData()
    for manifest in selected(find_manifests(args.paths), args.service):
        for declaration in manifest.mirrors:
            table = mirror_table(declaration, metadata)
            print(f"-- {manifest.service}: mirror of {declaration.contract.label}")
            print(str(CreateTable(table).compile(dialect=dialect)).strip() + ";\n")
    return EXIT_OK


def cmd_mirrors_render(args: argparse.Namespace) -> int:
    from replication.consumer.wiring import STATEMENTS_FILE, dump_statements

    out = Path(args.out)
    count = 0
    for manifest in selected(find_manifests(args.paths), args.service):
        if not manifest.mirrors:
            continue
        # <out>/<service>/ beside the service's replication.yaml in a function's package,
        # where the apply handler looks for it.
        folder = out / manifest.service
        folder.mkdir(parents=True, exist_ok=True)
        dialect = "mysql" if args.dialect == "mariadb" else args.dialect
        target = folder / STATEMENTS_FILE.format(dialect=dialect)
        target.write_text(dump_statements(manifest, dialect), encoding="utf-8")
        print(f"wrote {target} ({len(manifest.mirrors)} mirror(s))")
        count += 1
    print(f"{count} statement file(s) rendered")
    return EXIT_OK


def cmd_relay(args: argparse.Namespace) -> int:
    from replication.outbox.runner import RelaySettings, build_relay, run_forever

    [manifest] = selected(find_manifests(args.manifests), args.service)
    defaults = RelaySettings.from_environment()
    settings = RelaySettings(
        prefix=args.prefix or defaults.prefix,
        payload_bucket=args.payload_bucket or defaults.payload_bucket,
        batch_size=args.batch_size or defaults.batch_size,
    )
    relay = build_relay(manifest, settings)
    if args.once:
        stats = relay.drain()
        print(f"published {stats.published}, failed {stats.failed}, pending {relay.pending()}")
        return EXIT_OK
    run_forever(relay, poll_interval=args.poll_interval, out=sys.stdout)
    return EXIT_OK


def cmd_consume(args: argparse.Namespace) -> int:
    from replication.consumer.runner import RunnerSettings
    from replication.consumer.wiring import ConsumerSettings, build_runner

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
        return EXIT_USAGE
    runner = build_runner(manifest, settings, runner_settings, out=sys.stderr)
    if args.drain:
        stats = runner.drain()
        print(stats.line(), file=sys.stderr)
    else:
        runner.run()
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from replication.demo import run_demo

    return run_demo(database_url=args.database_url, out=sys.stdout)


def topology_of(args: argparse.Namespace) -> Any:
    from replication.topology.model import build_topology

    return build_topology(find_manifests(args.manifests), prefix=prefix_of(args))


def cmd_topology_plan(args: argparse.Namespace) -> int:
    from replication.topology.aws import AwsTopology

    plan = AwsTopology.from_environment().plan(topology_of(args))
    if args.json:
        print(json.dumps({"changes": [c.as_dict() for c in plan.changes]}, indent=2))
    else:
        print(plan.render())
    return EXIT_OK


def cmd_topology_apply(args: argparse.Namespace) -> int:
    from replication.topology.aws import AwsTopology

    topology = topology_of(args)
    aws = AwsTopology.from_environment()
    plan = aws.plan(topology)
    print(plan.render())
    if not plan.pending:
        return EXIT_OK
    aws.apply(topology)
    print(f"applied {len(plan.pending)} change(s)")
    return EXIT_OK


def cmd_topology_render(args: argparse.Namespace) -> int:
    from replication.topology.cloudformation import RenderSettings, render_templates

    settings = RenderSettings(
        provisioned_concurrency=args.provisioned_concurrency,
        snapstart=args.snapstart,
        keep_warm=args.keep_warm,
        batch_size=args.batch_size,
        max_concurrency=args.max_concurrency,
        runtime=f"python{args.python}",
        architecture=args.arch,
        relay_mode=args.relay_mode,
    )
    templates = render_templates(find_manifests(args.manifests), settings)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for account, template in templates.items():
        target = out / f"replication-{account}.json"
        target.write_text(json.dumps(template, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {target} ({len(template['Resources'])} resources)")
    return EXIT_OK


def cmd_topology_destroy(args: argparse.Namespace) -> int:
    from replication.topology.aws import AwsTopology, destroy

    topology = topology_of(args)
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


def cmd_migrations(args: argparse.Namespace) -> int:
    try:
        from replication import migrations
    except ModuleNotFoundError as exc:
        if exc.name not in ("alembic", "mako"):
            raise
        raise ConfigurationError(
            "migrations need Alembic: install the wheel with its cli extra, or pip install alembic"
        ) from None

    [manifest] = selected(find_manifests(args.manifests), args.service)
    from replication.consumer.database import url_for

    url = args.url or url_for(manifest)
    versions = Path(args.versions) if args.versions else None
    config = migrations.alembic_config(manifest, url, versions=versions)
    # Alembic says each step it runs ("Running upgrade a -> b, message") through logging.
    alembic_log = logging.getLogger("alembic.runtime.migration")
    if not alembic_log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.addFilter(lambda record: record.getMessage().startswith("Running "))
        alembic_log.addHandler(handler)
        alembic_log.setLevel(logging.INFO)
    from alembic.util import CommandError

    try:
        if args.command == "generate":
            migrations.generate(config, args.message)
        elif args.command in ("upgrade", "downgrade"):
            move = migrations.upgrade if args.command == "upgrade" else migrations.downgrade
            move(config, args.revision)
            # The revision reached, not the one asked for: "-1" or "head" say little.
            now = ", ".join(migrations.current(config)) or "base"
            print(f"{manifest.service}: {args.command}d to {now}")
        else:
            migrations.check(config)
            print(f"{manifest.service}: the database matches the declarations")
    except CommandError as exc:  # an unknown revision, a database behind its head, ...
        raise ConfigurationError(str(exc)) from exc
    return EXIT_OK
