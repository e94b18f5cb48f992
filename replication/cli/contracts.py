"""``replication contracts``: list the contracts; lock them and check changes against the lock."""

from __future__ import annotations

__all__ = ["add_commands", "cmd_check", "cmd_list", "cmd_lock"]

import argparse
import json
import sys
from pathlib import Path

from replication.cli.exits import ExitCode
from replication.cli.options import (
    Subcommands,
    existing_paths,
    import_contracts,
    json_option,
    manifests_option,
    print_json,
)
from replication.compat import Change, ConsumerUse, Report, compare, lock_document, read_lock
from replication.contracts import registry
from replication.errors import ConfigurationError
from replication.manifest import mirrored_as_written

DEFAULT_LOCK = "contracts.lock.json"


def advice(breaking: tuple[Change, ...]) -> str:
    """What to do about breaking changes, naming the versions to publish."""
    steps = []
    for label in sorted({c.contract for c in breaking}):
        entity, version = label.rsplit(" v", 1)
        new = f"{entity} v{int(version) + 1}"
        steps.append(f"publish {new} alongside {label} (with a declared conversion to v{version})")
    return (
        "A breaking change cannot be made in place: "
        + "; ".join(steps)
        + ", move each consumer to the new version, then retire the old one once nothing "
        "mirrors it. See docs/compatibility.md."
    )


def add_commands(groups: Subcommands) -> None:
    """Add the ``contracts`` group: ``list``, ``lock`` and ``check``."""
    contracts = groups.add_parser(
        "contracts", help="inspect the contracts; lock them and check changes against the lock"
    )
    commands = contracts.add_subparsers(dest="command", required=True, metavar="COMMAND")
    listing = commands.add_parser(
        "list",
        help="list every contract with its key and fields",
        epilog="Example: replication contracts list",
    )
    manifests_option(listing)
    json_option(listing)
    listing.set_defaults(func=cmd_list)

    lock = commands.add_parser(
        "lock",
        help="write the lock file: the JSON Schema and key of every contract version",
        description="Write the JSON Schema and key of every registered contract version to "
        "the lock file. Refuses (exit 1) when the change from the current lock would break a "
        "consumer, unless --force.",
        epilog="Example: replication contracts lock --manifests examples",
    )
    check = commands.add_parser(
        "check",
        help="classify every change against the lock and the consumers; exit 1 if breaking",
        description="Compare the registered contracts with the lock file and with what every "
        "consumer's manifest mirrors. Each change is compatible, breaking for named "
        "consumers, or breaking for nobody (no consumer mirrors the field). Exit 1 on "
        "a change that breaks a consumer; with --strict, exit 5 while the lock is behind.",
        epilog="Example: replication contracts check --manifests examples --strict",
    )
    for command in (lock, check):
        command.add_argument("--lock", default=DEFAULT_LOCK, help=f"lock file ({DEFAULT_LOCK})")
        manifests_option(command, help="the owners' and consumers' manifest files or folders")
        json_option(command)
    lock.add_argument(
        "--force", action="store_true", help="write it even when a change breaks a consumer"
    )
    check.add_argument(
        "--strict",
        action="store_true",
        help="also exit 5 when the lock is behind the contracts (for CI)",
    )
    lock.set_defaults(func=cmd_lock)
    check.set_defaults(func=cmd_check)


def cmd_list(args: argparse.Namespace) -> ExitCode:
    """Every registered contract with its key and fields."""
    import_contracts(args.manifests)
    if args.json:
        print_json(
            {
                "contracts": [
                    {
                        "entity": info.entity,
                        "version": info.version,
                        "owner": info.owner,
                        "key": list(info.key),
                        "fields": [
                            {
                                "name": spec.name,
                                "kind": str(spec.kind),
                                "pii": spec.pii,
                                "optional": spec.nullable,
                            }
                            for spec in info.fields.values()
                        ],
                    }
                    for info in registry
                ]
            }
        )
        return ExitCode.OK
    for info in registry:
        key = ", ".join(info.key)
        print(f"{info.label}  (owner {info.owner}, key {key})")
        for spec in info.fields.values():
            flags = [f for f, on in (("pii", spec.pii), ("optional", spec.nullable)) if on]
            suffix = f"  [{', '.join(flags)}]" if flags else ""
            print(f"    {spec.name}: {spec.kind}{suffix}")
    return ExitCode.OK


def _report(args: argparse.Namespace) -> Report:
    import_contracts(args.manifests)
    paths = existing_paths(args.manifests)
    uses = [
        ConsumerUse(service, entity, version, frozenset(fields))
        for service, entity, version, fields in mirrored_as_written(paths)
    ]
    return compare(read_lock(Path(args.lock)), registry, uses)


def _line(change: Change) -> str:
    where = f"{change.field}: " if change.field else ""
    text = f"  {change.verdict:<19}  {where}{change.rule} ({change.detail})"
    if change.verdict == "breaking":
        text += "; breaks " + "; ".join(
            f"{service} (mirrors {', '.join(fields)})"
            for service, fields in sorted(change.consumers.items())
        )
    elif change.verdict == "breaking for nobody":
        text += "; no consumer mirrors it"
    return text


def _print(report: Report) -> None:
    contract = None
    for change in report.changes:
        if change.contract != contract:
            contract = change.contract
            print(contract)
        print(_line(change))


def cmd_check(args: argparse.Namespace) -> ExitCode:
    """Classify the changes since the lock: 1 when one breaks a consumer, 5 when behind."""
    report = _report(args)
    breaking = report.breaking
    behind = bool(report.changes)
    if args.json:
        print_json(
            {
                "changes": [c.as_json() for c in report.changes],
                "breaking": len(breaking),
                "lock_current": not behind,
            }
        )
    else:
        _print(report)
        counts: dict[str, int] = {}
        for change in report.changes:
            counts[change.verdict] = counts.get(change.verdict, 0) + 1
        summary = ", ".join(f"{n} {verdict}" for verdict, n in sorted(counts.items()))
        print(
            f"{len(report.changes)} change(s) since {args.lock}"
            + (f": {summary}" if summary else "")
        )
        if breaking:
            consumers = sorted({s for c in breaking for s in c.consumers})
            print(f"error: breaks {', '.join(consumers)}. {advice(breaking)}", file=sys.stderr)
        elif behind:
            print(
                "the lock is behind the contracts: run `replication contracts lock` "
                f"and commit {args.lock}"
            )
    if breaking:
        return ExitCode.INVALID
    if behind and args.strict:
        return ExitCode.DIFFERS
    return ExitCode.OK


def cmd_lock(args: argparse.Namespace) -> ExitCode:
    """Write the lock; refuse changes that break a consumer unless --force."""
    path = Path(args.lock)
    import_contracts(args.manifests)
    if not len(registry):
        raise ConfigurationError("no contract is registered: nothing to lock (the lock is kept)")
    if path.exists():
        report = _report(args)
        if report.breaking and not args.force:
            if args.json:
                print_json({"written": False, "breaking": [c.as_json() for c in report.breaking]})
            else:
                _print(Report(report.breaking))
            print(
                "error: not locking changes that break a consumer. "
                f"{advice(report.breaking)} (--force locks them anyway)",
                file=sys.stderr,
            )
            return ExitCode.INVALID
    document = lock_document(registry)
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if args.json:
        print_json({"written": True, "lock": str(path), "contracts": len(document["contracts"])})
    else:
        print(f"wrote {path}: {len(document['contracts'])} contract version(s)")
    return ExitCode.OK
