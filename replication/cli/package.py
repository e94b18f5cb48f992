"""``replication package``: build a service's Lambda function zips."""

from __future__ import annotations

__all__ = ["add_commands", "cmd_package"]

import argparse
from pathlib import Path

from replication.cli.exits import ExitCode
from replication.cli.options import Subcommands, find_manifests, manifests_option, selected


def add_commands(groups: Subcommands) -> None:
    """Add ``package`` to the command's groups."""
    from replication.package import ARCHITECTURES, PYTHON_VERSIONS

    package = groups.add_parser(
        "package",
        help="build the zip of each Lambda function of a service (relay, apply)",
        description="Build, for each function of a service (the relay if it owns entities, "
        "the apply function if it mirrors any), a zip with the library and its dependencies "
        "as binary wheels for the target architecture and Python version, the database "
        "driver, and in <service>/ the manifest, the contracts modules it names and the "
        "pre-rendered statements. Prints each artifact's size; refuses one over Lambda's "
        "250 MB unzipped. Needs pip and the package index.",
        epilog="Example: replication package --service orders --arch arm64 --out build/functions",
    )
    package.add_argument("--service", required=True, help="the service to package")
    manifests_option(package)
    package.add_argument(
        "--arch", choices=list(ARCHITECTURES), default="x86_64", help="Lambda architecture"
    )
    package.add_argument(
        "--python", choices=list(PYTHON_VERSIONS), default="3.12", help="Lambda Python runtime"
    )
    package.add_argument(
        "--dialect",
        choices=["postgresql", "mysql"],
        default="postgresql",
        help="the service's database (its driver and statements)",
    )
    package.add_argument(
        "--database-ca-bundle",
        metavar="PEM",
        help="CA certificates of the service's database (for RDS its global-bundle.pem), "
        "shipped as database-ca-bundle.pem, where the template's DatabaseCaBundle looks",
    )
    package.add_argument("--out", default="build/functions", help="output folder")
    package.set_defaults(func=cmd_package)


def cmd_package(args: argparse.Namespace) -> ExitCode:
    """Build and list the artifacts."""
    from replication.package import PackageSettings, build_artifacts

    [manifest] = selected(find_manifests(args.manifests), args.service)
    settings = PackageSettings(
        architecture=args.arch,
        python=args.python,
        dialect=args.dialect,
        database_ca_bundle=Path(args.database_ca_bundle) if args.database_ca_bundle else None,
    )
    print(f"{manifest.service}: installing wheels for {args.arch} Python {args.python} ...")
    for artifact in build_artifacts(manifest, settings, Path(args.out)):
        note = "  (over 50 MB zipped: deploy it through S3, as the template does)"
        print(
            f"wrote {artifact.path}  {artifact.function}: {artifact.zipped / 2**20:.1f} MB "
            f"zipped, {artifact.unzipped / 2**20:.1f} MB unzipped"
            + (note if artifact.needs_s3 else "")
        )
    return ExitCode.OK
