"""The domain half of e-mail validation, done once per domain instead of once per address.

pydantic's ``EmailStr`` calls ``email_validator.validate_email`` for every
value, and most of its time goes to checking the domain (IDNA encoding and
the per-character checks of UTS #46), which in a stream of change events is
the same few domains over and over. :func:`cache_domain_checks` puts a bounded
cache in front of email_validator's domain check: the same function, the same
result for the same domain and options, a copy of it each time. A domain that
fails is checked again each time (errors are not cached), and every address's
local part is still checked in full.

It is applied by the change event decoder once email_validator has been
imported (by pydantic, on the first ``EmailStr`` it validates), and leaves
email_validator as it is if that module no longer has the function it wraps.
"""

from __future__ import annotations

__all__ = ["cache_domain_checks"]

import functools
import sys
from typing import Any

CACHED_DOMAINS = 4096
"""Distinct (domain, options) results kept, least recently used dropped first."""
_MODULE = "email_validator.validate_email"
_NAME = "validate_email_domain_name"


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
