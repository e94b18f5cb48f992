"""The exit codes of ``replication``: one meaning each, the same for every command.

====  ===========  =====================================================
code  name         meaning
====  ===========  =====================================================
0     OK           done, and nothing differs
1     INVALID      invalid declarations or input, or refused
2     USAGE        wrong usage of the command line
3     UNREACHABLE  AWS or a database does not answer or refuses the
                   credentials
4     PARTIAL      done in part; what was not done is named and left as
                   it was
5     DIFFERS      something differs from what is declared; applying it
                   is pending
====  ===========  =====================================================

``docs/cli.md`` shows :attr:`ExitCode.meaning` of each, in full; a test holds
the two together.
"""

from __future__ import annotations

__all__ = ["ExitCode"]

from enum import IntEnum


class ExitCode(IntEnum):
    """What the exit status of a ``replication`` command says."""

    OK = 0
    INVALID = 1
    USAGE = 2  # argparse exits 2 on a usage error: the same code
    UNREACHABLE = 3
    PARTIAL = 4
    DIFFERS = 5

    @property
    def meaning(self) -> str:
        """The meaning of the code, as docs/cli.md states it."""
        return _MEANINGS[self]


_MEANINGS = {
    ExitCode.OK: "done, and nothing differs",
    ExitCode.INVALID: (
        "invalid declarations or input (a manifest, a contract, an unknown service, entity, "
        "queue or revision, a file that cannot be read or written), or refused (a contract "
        "change that breaks a consumer, a database behind its head revision, a destroy or "
        "purge not confirmed)"
    ),
    ExitCode.USAGE: (
        "wrong usage: an unknown command or option, a missing argument, an option value out "
        "of range"
    ),
    ExitCode.UNREACHABLE: "AWS or a database does not answer, or refuses the credentials",
    ExitCode.PARTIAL: (
        "done in part: some resources, messages or rows could not be deleted, moved, sent or "
        "read; the output names them, and they are left where they were"
    ),
    ExitCode.DIFFERS: (
        "something differs from what is declared, and applying it is pending: the account "
        "from the topology (`topology plan --exit-code`), a database from its declarations "
        "(`migrations check`), a mirror from its owner (`reconcile`), the lock from the "
        "contracts (`contracts check --strict`)"
    ),
}
