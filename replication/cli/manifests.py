"""``replication manifests``: validate service manifests against the contracts."""

from __future__ import annotations

__all__ = ["add_commands", "cmd_validate"]

import argparse

from replication.cli.exits import ExitCode
from replication.cli.options import Subcommands, find_manifests, json_option, print_json


def add_commands(groups: Subcommands) -> None:
    """Add the ``manifests`` group: ``validate``."""
    manifests = groups.add_parser("manifests", help="check service manifests")
    commands = manifests.add_subparsers(dest="command", required=True, metavar="COMMAND")
    validate = commands.add_parser(
        "validate",
        help="validate manifests against the contracts; every problem with its line",
        description="Load every manifest and check it against the contracts it names. "
        "Exit 1 with every problem, each with its file and line, on stderr.",
        epilog="Example: replication manifests validate examples/orders/replication.yaml",
    )
    validate.add_argument(
        "paths", nargs="*", default=["."], help="manifest files, or folders to search (here)"
    )
    json_option(validate)
    validate.set_defaults(func=cmd_validate)


def cmd_validate(args: argparse.Namespace) -> ExitCode:
    """Each valid manifest with what it owns and mirrors; invalid ones raise."""
    manifests = find_manifests(args.paths)
    if args.json:
        print_json(
            {
                "manifests": [
                    {
                        "path": str(m.path),
                        "service": m.service,
                        "owns": [{"entity": o.entity, "version": o.version} for o in m.owns],
                        "mirrors": [
                            {
                                "entity": d.contract.entity,
                                "version": d.contract.version,
                                "table": d.table,
                            }
                            for d in m.mirrors
                        ],
                    }
                    for m in manifests
                ]
            }
        )
        return ExitCode.OK
    for manifest in manifests:
        owns = ", ".join(f"{o.entity} v{o.version}" for o in manifest.owns) or "nothing"
        mirrors = ", ".join(f"{m.contract.label} -> {m.table}" for m in manifest.mirrors)
        print(f"ok  {manifest.path}: service {manifest.service}")
        print(f"      owns: {owns}")
        print(f"      mirrors: {mirrors or 'nothing'}")
    return ExitCode.OK
