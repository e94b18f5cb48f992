"""``replication mirrors``: the mirror tables' DDL and their pre-rendered apply statements."""

from __future__ import annotations

__all__ = ["add_commands", "cmd_ddl", "cmd_render"]

import argparse
from pathlib import Path

from replication.cli.exits import ExitCode
from replication.cli.options import Subcommands, find_manifests, selected

DIALECTS = ("postgresql", "mysql", "mariadb", "sqlite")


def add_commands(groups: Subcommands) -> None:
    """Add the ``mirrors`` group: ``ddl`` and ``render``."""
    mirrors = groups.add_parser("mirrors", help="mirror tables and their apply statements")
    commands = mirrors.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ddl = commands.add_parser(
        "ddl",
        help="print the CREATE TABLE of each mirror",
        epilog="Example: replication mirrors ddl examples/ --service orders --dialect postgresql",
    )
    _selection(ddl)
    ddl.set_defaults(func=cmd_ddl)

    render = commands.add_parser(
        "render",
        help="render the apply statements of each consumer to <out>/<service>/"
        "mirror-statements.<dialect>.json, to ship beside its manifest in a function package "
        "(the apply handler then never imports SQLAlchemy)",
        epilog="Example: replication mirrors render examples/ --dialect postgresql --out build/",
    )
    _selection(render)
    render.add_argument("--out", default="build/statements", help="output folder")
    render.set_defaults(func=cmd_render)


def _selection(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "paths", nargs="*", default=["."], help="manifest files, or folders to search (here)"
    )
    command.add_argument("--service", help="only this service's mirrors")
    command.add_argument(
        "--dialect",
        choices=DIALECTS,
        default="postgresql",
        help="database dialect (default: postgresql)",
    )


def cmd_ddl(args: argparse.Namespace) -> ExitCode:
    """Print the CREATE TABLE of each selected mirror."""
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
    return ExitCode.OK


def cmd_render(args: argparse.Namespace) -> ExitCode:
    """Write each consumer's statements file under ``--out``."""
    from replication.consumer.wiring import STATEMENTS_FILE, dump_statements
    from replication.dialects import dialect_named

    out = Path(args.out)
    count = 0
    for manifest in selected(find_manifests(args.paths), args.service):
        if not manifest.mirrors:
            continue
        # <out>/<service>/ beside the service's replication.yaml in a function's package,
        # where the apply handler looks for it.
        folder = out / manifest.service
        folder.mkdir(parents=True, exist_ok=True)
        dialect = dialect_named(args.dialect).name  # mariadb's statements are mysql's
        target = folder / STATEMENTS_FILE.format(dialect=dialect)
        target.write_text(dump_statements(manifest, dialect), encoding="utf-8")
        print(f"wrote {target} ({len(manifest.mirrors)} mirror(s))")
        count += 1
    print(f"{count} statement file(s) rendered")
    return ExitCode.OK
