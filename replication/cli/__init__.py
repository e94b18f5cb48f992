"""The ``replication`` command: parse, wire, call. Logic lives in the library.

Each command group is a module of this package declaring its own commands and
their handlers (``add_commands(groups)``); :func:`build_parser` assembles them,
and :func:`main` turns the errors a handler raises into one ``error:`` line and
an exit code. Every code has one meaning, the same for every command:
:class:`replication.cli.exits.ExitCode`, tabled in docs/cli.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from replication.cli import (
    backfill,
    consume,
    contracts,
    demo,
    dlq,
    init,
    manifests,
    migrations,
    mirrors,
    package,
    reconcile,
    relay,
    topology,
)
from replication.cli.exits import ExitCode
from replication.cli.options import override_contracts
from replication.contract_modules import CONTRACTS_ENV
from replication.errors import ConfigurationError, UnreachableError

__all__ = ["ExitCode", "build_parser", "main"]

GROUPS = (
    init,
    package,
    contracts,
    manifests,
    mirrors,
    topology,
    migrations,
    relay,
    consume,
    demo,
    dlq,
    backfill,
    reconcile,
)
"""The modules of the command groups, in the order ``replication --help`` lists them."""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("replication")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _exit_codes() -> str:
    codes = ", ".join(f"{code.value} {code.name.lower()}" for code in ExitCode)
    return f"Exit codes: {codes}\n(docs/cli.md says what each means)."


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``replication`` command, assembled from its groups."""
    parser = argparse.ArgumentParser(
        prog="replication",
        description="Replicate owned entities into consumers' mirror tables.",
        epilog=f"Example: replication manifests validate examples/\n\n{_exit_codes()}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    for group in GROUPS:
        group.add_commands(groups)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (argparse exits 2 on wrong usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    saved = os.environ.get(CONTRACTS_ENV)
    try:
        if args.contracts:
            override_contracts(args.contracts)
        code: ExitCode = args.func(args)
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.INVALID
    except UnreachableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.UNREACHABLE
    except BrokenPipeError:  # output piped into head and friends
        sys.stderr.close()
        return ExitCode.OK
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


def _database_failure(exc: Exception) -> tuple[str, ExitCode] | None:
    """The message and exit code of a database that cannot be used; None for other errors."""
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        import traceback

        loading = any(f.name == "import_dbapi" for f in traceback.extract_tb(exc.__traceback__))
        if exc.name in _DRIVER_HINTS or loading:
            hint = _DRIVER_HINTS.get(exc.name, f"pip install the package that provides {exc.name}")
            return f"the database driver {exc.name} is not installed ({hint})", ExitCode.INVALID
    # Only an SQLAlchemy that is already loaded can have raised: the apply never imports it.
    errors = sys.modules.get("sqlalchemy.exc")
    if errors is None or not isinstance(exc, (errors.OperationalError, errors.InterfaceError)):
        return None
    # Failing to connect (no statement) or losing the connection; not a failing query.
    if exc.statement is not None and not exc.connection_invalidated:
        return None
    return (
        f"the database does not answer or refuses the credentials: {_first_line(exc.orig)}",
        ExitCode.UNREACHABLE,
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
