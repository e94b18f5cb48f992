"""``replication init``: scaffold a service in the current folder."""

from __future__ import annotations

__all__ = ["add_commands", "cmd_init"]

import argparse
import os
from pathlib import Path

from replication.cli.exits import ExitCode
from replication.cli.options import Subcommands
from replication.errors import ConfigurationError

_EPILOG = """Examples:
  replication init --service shipping --owns shipping.parcel
  replication init --service billing --mirrors shipping.parcel \\
      --contracts shipping_contracts --python-path ../shipping"""


def add_commands(groups: Subcommands) -> None:
    """Add ``init`` to the command's groups."""
    init = groups.add_parser(
        "init",
        help="scaffold a service here: manifest, contracts module, Alembic environment",
        description="Write a service's replication files into the current folder (or "
        "--folder): replication.yaml; <service>_contracts.py with a starter contract for each "
        "entity it owns; migrations/ (its own Alembic environment, revisions in "
        "migrations/versions/<service>/) and alembic.ini. A mirrored entity's contract must be "
        "importable (--contracts, --python-path); its non-pii fields are mirrored. Refuses "
        "to overwrite any file, and then writes nothing.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    init.add_argument("--service", required=True, help="the service's name, e.g. shipping")
    init.add_argument(
        "--owns", action="append", default=[], metavar="ENTITY", help="an entity it owns"
    )
    init.add_argument(
        "--mirrors",
        action="append",
        default=[],
        metavar="ENTITY[:VERSION]",
        help="an entity it mirrors (default: the newest version)",
    )
    init.add_argument(
        "--contracts",
        dest="init_contracts",
        action="append",
        default=[],
        metavar="MODULE",
        help="a module declaring contracts it mirrors (another service's)",
    )
    init.add_argument(
        "--python-path",
        action="append",
        default=[],
        metavar="DIR",
        help="a folder, relative to the service's, where those modules are found",
    )
    init.add_argument(
        "--database-url-env",
        metavar="NAME",
        help="the variable holding its database URL (default <SERVICE>_DATABASE_URL)",
    )
    init.add_argument("--folder", default=".", help="where to write (default: here)")
    init.add_argument(
        "--migrations-only",
        action="store_true",
        help="only the Alembic environment (migrations/, alembic.ini), beside an existing "
        "replication.yaml",
    )
    init.set_defaults(func=cmd_init)


def cmd_init(args: argparse.Namespace) -> ExitCode:
    """Plan, write, validate (taking everything back when invalid), print the next commands."""
    from replication.contract_modules import CONTRACTS_ENV
    from replication.manifest import load_manifest
    from replication.scaffold import (
        plan_migrations,
        plan_service,
        remove_scaffold,
        write_scaffold,
    )

    folder = Path(args.folder)
    # What init writes names its own contracts: an override meant for other work must
    # not decide whether the new manifest is valid.
    os.environ.pop(CONTRACTS_ENV, None)
    if args.migrations_only:
        scaffold = plan_migrations(folder, args.service)
    else:
        scaffold = plan_service(
            folder.resolve(),
            args.service,
            owns=args.owns,
            mirrors=args.mirrors,
            contracts=args.init_contracts,
            python_path=args.python_path,
            url_env=args.database_url_env,
        )
    written = write_scaffold(folder, scaffold)
    try:
        manifest = load_manifest(folder / "replication.yaml")
        if manifest.service != args.service:
            raise ConfigurationError(
                f"{folder / 'replication.yaml'} is service {manifest.service}, not {args.service}"
            )
    except ConfigurationError as exc:
        remove_scaffold(written)
        raise ConfigurationError(f"nothing written: {exc}") from None
    for path in written:
        if path.is_file():
            print(f"wrote {path}")
    owns = ", ".join(o.entity for o in manifest.owns) or "nothing"
    mirrors = ", ".join(f"{m.contract.label} -> {m.table}" for m in manifest.mirrors)
    print(f"service {manifest.service}: owns {owns}; mirrors {mirrors or 'nothing'}")
    print("next:")
    for step in scaffold.next_steps:
        print(f"  {step}")
    return ExitCode.OK
