"""E-mail validation, done once per domain and in one step for plain addresses.

pydantic's ``EmailStr`` calls ``email_validator.validate_email`` for every
value, and most of its time goes to checking the domain (IDNA encoding and
the per-character checks of UTS #46), which in a stream of change events is
the same few domains over and over. :func:`cache_domain_checks` puts a bounded
cache in front of email_validator's domain check: the same function, the same
result for the same domain and options, a copy of it each time. A domain that
fails is checked again each time (errors are not cached).

The rest is the general machinery of an address that can be anything (display
names, quoted and internationalized local parts, bracketed IP addresses).
:func:`shortcut_plain_addresses` puts a shortcut in front of pydantic's
``validate_email`` for the address nearly every stream carries: ASCII, an
unquoted dot-atom local part of at most 64 characters that is not one of
the mailbox names email_validator lower-cases, and a domain of letters,
digits, dots and hyphens. For those it runs the very checks email_validator
would run on them, in its own order and with its own options (the local part
against its ``DOT_ATOM_TEXT``, the domain through its domain check, the three
lengths against its limit) and returns what pydantic would. Anything else, and
any address a check refuses, goes to pydantic's own function, which gives the
answer or the error.

Both are applied by the change event decoder once email_validator has been
imported (by pydantic, on the first ``EmailStr`` it validates), and leave the
libraries as they are if they no longer have what is wrapped.
"""

from __future__ import annotations

__all__ = ["cache_domain_checks", "shortcut_plain_addresses"]

import functools
import re
import sys
from collections.abc import Callable
from typing import Any

CACHED_DOMAINS = 4096
"""Distinct (domain, options) results kept, least recently used dropped first."""
_MODULE = "email_validator.validate_email"
_NAME = "validate_email_domain_name"
_PLAIN_DOMAIN = re.compile(r"[A-Za-z0-9.-]+")
"""A domain the shortcut takes: no second @-sign, brackets, spaces or non-ASCII text (whether
it is a valid domain is email_validator's domain check's to say)."""


def cache_domain_checks() -> bool:
    """Cache email_validator's domain check if it is imported; whether it is cached now."""
    module = sys.modules.get(_MODULE)
    if module is None:
        return False
    check = getattr(module, _NAME, None)
    if check is None or not callable(check):
        return True  # another email_validator: nothing to do, and nothing to try again
    if getattr(check, "__wrapped_by_replication__", False):
        return True
    cached = functools.lru_cache(maxsize=CACHED_DOMAINS)(check)

    @functools.wraps(check)
    def checked(*args: Any, **kwargs: Any) -> Any:
        result = cached(*args, **kwargs)
        return dict(result) if isinstance(result, dict) else result

    checked.__wrapped_by_replication__ = True  # type: ignore[attr-defined]
    setattr(module, _NAME, checked)
    return True


def shortcut_plain_addresses() -> bool:
    """Put the plain-address shortcut in front of pydantic's e-mail validation, if pydantic
    has imported email_validator; whether it is in place (or cannot be) now."""
    networks = sys.modules.get("pydantic.networks")
    library = sys.modules.get("email_validator")
    module = sys.modules.get(_MODULE)
    rules = sys.modules.get("email_validator.rfc_constants")
    if networks is None or library is None or module is None or rules is None:
        return False
    original = getattr(networks, "validate_email", None)
    needed = (
        (rules, "DOT_ATOM_TEXT"),
        (rules, "EMAIL_MAX_LENGTH"),
        (rules, "LOCAL_PART_MAX_LENGTH"),
        (rules, "CASE_INSENSITIVE_MAILBOX_NAMES"),
        (library, "EmailNotValidError"),
        (library, "TEST_ENVIRONMENT"),
        (library, "GLOBALLY_DELIVERABLE"),
        (module, _NAME),
    )
    if not callable(original) or any(not hasattr(owner, name) for owner, name in needed):
        return True  # another pydantic or email_validator: nothing to do, nothing to retry
    if getattr(original, "__wrapped_by_replication__", False):
        return True
    networks.validate_email = _shortcut(original, library, module, rules)  # type: ignore[attr-defined]
    return True


def _shortcut(
    original: Callable[[str], tuple[str, str]], library: Any, module: Any, rules: Any
) -> Callable[[str], tuple[str, str]]:
    dot_atom = rules.DOT_ATOM_TEXT
    longest = rules.EMAIL_MAX_LENGTH
    longest_local = rules.LOCAL_PART_MAX_LENGTH
    case_insensitive = frozenset(rules.CASE_INSENSITIVE_MAILBOX_NAMES)
    refused = library.EmailNotValidError

    @functools.wraps(original)
    def validate_email(value: str) -> tuple[str, str]:
        if type(value) is str and len(value) <= longest and value.isascii():
            local, at, domain = value.partition("@")
            if (
                at
                and len(local) <= longest_local
                and dot_atom.match(local)
                and _PLAIN_DOMAIN.fullmatch(domain)
                and local.lower() not in case_insensitive
            ):
                try:
                    names = getattr(module, _NAME)(
                        domain,
                        test_environment=library.TEST_ENVIRONMENT,
                        globally_deliverable=library.GLOBALLY_DELIVERABLE,
                    )
                except refused:
                    return original(value)  # its error, worded as pydantic words it
                normalized = f"{local}@{names['domain']}"
                ascii_form = f"{local}@{names['ascii_domain']}"
                if len(normalized.encode()) <= longest and len(ascii_form) <= longest:
                    return local, normalized
        return original(value)

    validate_email.__wrapped_by_replication__ = True  # type: ignore[attr-defined]
    return validate_email
