"""``replication topology``: plan, apply, render and destroy the SNS topics and SQS queues."""

from __future__ import annotations

__all__ = ["add_commands", "cmd_apply", "cmd_destroy", "cmd_plan", "cmd_render"]

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from replication.cli.exits import ExitCode
from replication.cli.options import (
    Subcommands,
    find_manifests,
    json_option,
    manifests_option,
    prefix_of,
    prefix_option,
    print_json,
)
from replication.errors import ConfigurationError
from replication.package import ARCHITECTURES, PYTHON_VERSIONS

if TYPE_CHECKING:  # each command imports the library (and boto3) only when it runs
    from replication.topology.model import Topology


def add_commands(groups: Subcommands) -> None:
    """Add the ``topology`` group: ``plan``, ``apply``, ``render`` and ``destroy``."""
    topology = groups.add_parser("topology", help="SNS topics, SQS queues and DLQs")
    commands = topology.add_subparsers(dest="command", required=True, metavar="COMMAND")
    plan = commands.add_parser(
        "plan",
        help="compare the manifests with the live account and show what apply would do",
        description="List each resource as create, update (with each differing attribute) "
        "or unchanged. Exit 0 whatever the plan; with --exit-code, exit 5 when changes are "
        "pending and 0 when there are none.",
        epilog="Example: AWS_ENDPOINT_URL=http://127.0.0.1:5000 replication topology plan --json",
    )
    manifests_option(plan)
    prefix_option(plan)
    json_option(plan, help="machine-readable output")
    plan.add_argument(
        "--exit-code",
        action="store_true",
        help="exit 5 when changes are pending, 0 when there are none (for CI)",
    )
    plan.set_defaults(func=cmd_plan)

    apply = commands.add_parser(
        "apply",
        help="create or fix topics, queues, DLQs and subscriptions; deletes nothing",
        epilog="Example: replication topology apply --manifests examples --prefix prod",
    )
    manifests_option(apply)
    prefix_option(apply)
    json_option(apply)
    apply.set_defaults(func=cmd_apply)

    render = commands.add_parser(
        "render",
        help="write CloudFormation templates (one per AWS account) for the topology",
        epilog="Example: replication topology render --manifests examples --out build/cfn",
    )
    _render_options(render)
    render.set_defaults(func=cmd_render)

    destroy = commands.add_parser(
        "destroy",
        help="delete the topology's resources, after confirmation; keeps queues with messages",
        description="Delete the topology's subscriptions, queues, DLQs and topics. A queue "
        "or DLQ that holds messages is kept unless --delete-messages; exit 4 when anything "
        "was kept.",
        epilog="Example: replication topology destroy --prefix test --yes",
    )
    manifests_option(destroy)
    prefix_option(destroy)
    destroy.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    destroy.add_argument(
        "--delete-messages",
        action="store_true",
        help="also delete queues and DLQs that still hold messages (they are lost)",
    )
    json_option(destroy)
    destroy.set_defaults(func=cmd_destroy)


def _render_options(render: argparse.ArgumentParser) -> None:
    manifests_option(render)
    render.add_argument(
        "--format", choices=["cloudformation"], default="cloudformation", help="output format"
    )
    render.add_argument("--out", default="build/cloudformation", help="output folder")
    render.add_argument(
        "--provisioned-concurrency",
        type=int,
        default=0,
        help="apply function environments kept initialised (default 0)",
    )
    render.add_argument("--snapstart", action="store_true", help="SnapStart on the apply functions")
    render.add_argument(
        "--keep-warm", metavar="SCHEDULE", help="ping apply functions, e.g. 'rate(5 minutes)'"
    )
    render.add_argument("--batch-size", type=int, default=10, help="SQS batch size (10)")
    render.add_argument(
        "--python",
        choices=list(PYTHON_VERSIONS),
        default="3.12",
        help="the functions' Lambda runtime (as replication package --python built them)",
    )
    render.add_argument(
        "--arch",
        choices=list(ARCHITECTURES),
        default="x86_64",
        help="the functions' architecture (as replication package --arch built them)",
    )
    render.add_argument(
        "--relay-mode",
        choices=["follow", "drain"],
        default="follow",
        help="follow: publish within a second of each commit (about $12 a month per owner "
        "at 256 MB); drain: at each minute's schedule (cents)",
    )
    render.add_argument(
        "--max-concurrency", type=int, default=5, help="event source mapping concurrency (5)"
    )


def _topology(args: argparse.Namespace) -> Topology:
    from replication.topology.model import build_topology

    return build_topology(find_manifests(args.manifests), prefix=prefix_of(args))


def cmd_plan(args: argparse.Namespace) -> ExitCode:
    """Show what apply would do; with --exit-code, 5 when changes are pending."""
    from replication.awsenv import aws_errors
    from replication.topology.aws import AwsTopology

    topology = _topology(args)
    with aws_errors("reading the live topology"):
        plan = AwsTopology.from_environment().plan(topology)
    if args.json:
        print_json({"changes": [c.as_dict() for c in plan.changes], "pending": len(plan.pending)})
    else:
        print(plan.render())
    if args.exit_code and plan.pending:
        return ExitCode.DIFFERS
    return ExitCode.OK


def cmd_apply(args: argparse.Namespace) -> ExitCode:
    """Show the plan, then converge the account to it."""
    from replication.awsenv import aws_errors
    from replication.topology.aws import AwsTopology

    topology = _topology(args)
    with aws_errors("reading the live topology"):
        aws = AwsTopology.from_environment()
        plan = aws.plan(topology)
    if not args.json:
        print(plan.render())
    if plan.pending:
        with aws_errors("applying the topology"):
            aws.apply(topology)
    if args.json:
        print_json({"changes": [c.as_dict() for c in plan.changes], "applied": len(plan.pending)})
    elif plan.pending:
        print(f"applied {len(plan.pending)} change(s)")
    return ExitCode.OK


def cmd_render(args: argparse.Namespace) -> ExitCode:
    """Write one CloudFormation template per AWS account."""
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
    return ExitCode.OK


def cmd_destroy(args: argparse.Namespace) -> ExitCode:
    """Delete the resources once confirmed; 4 when some were kept."""
    from replication.awsenv import aws_errors
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
            return ExitCode.INVALID
    with aws_errors("destroying the topology"):
        removals = destroy(
            AwsTopology.from_environment(), topology, delete_messages=args.delete_messages
        )
    kept = [r for r in removals if not r.deleted]
    if args.json:
        print_json(
            {
                "removals": [
                    {"kind": r.kind, "name": r.name, "deleted": r.deleted, "reason": r.reason}
                    for r in removals
                ],
                "deleted": len(removals) - len(kept),
                "kept": len(kept),
            }
        )
    else:
        for removal in removals:
            state = "deleted" if removal.deleted else f"kept: {removal.reason}"
            print(f"{removal.kind:<12} {removal.name}  ({state})")
        print(f"{len(removals) - len(kept)} deleted, {len(kept)} kept")
    return ExitCode.PARTIAL if kept else ExitCode.OK
