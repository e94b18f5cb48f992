"""E-mail domains checked once each: the same verdicts as email_validator alone, faster."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from pydantic.networks import validate_email
from pydantic_core import PydanticCustomError

from replication.email_domains import cache_domain_checks
from replication.errors import InvalidEventError
from replication.events import decode_event, encode_event, upserted
from tests.samples import customer

ADDRESSES = [
    "ada@example.com",
    "Ada.Lovelace+tag@Example.COM",
    "grace@bücher.example",
    "alan@xn--bcher-kva.example",
    "edsger@sub.domain.example.org",
    "no-at-sign.example.com",
    "two@@example.com",
    "trailing@example.com.",
    "hyphen@-bad-.example",
    "space@exa mple.com",
    "dots@example..com",
    "label@" + "a" * 64 + ".example",
    "ip@[127.0.0.1]",
    "unicode.local.ü@example.com",
    "ada@example.com",  # again: from the cache now
    "hyphen@-bad-.example",  # a failure is not cached: it fails again the same way
]

VERDICTS = textwrap.dedent(
    """
    import json, sys
    from pydantic.networks import validate_email
    out = []
    for address in json.loads(sys.argv[1]):
        try:
            out.append(["ok", list(validate_email(address))])
        except Exception as exc:
            out.append(["error", str(exc)])
    print(json.dumps(out))
    """
)


def verdicts_here() -> list[list[object]]:
    out: list[list[object]] = []
    for address in ADDRESSES:
        try:
            out.append(["ok", list(validate_email(address))])
        except PydanticCustomError as exc:
            out.append(["error", str(exc)])
    return out


def test_cached_domain_checks_give_email_validators_own_verdicts() -> None:
    validate_email("warm@example.com")  # pydantic imports email_validator
    assert cache_domain_checks()
    assert cache_domain_checks()  # once is enough; again changes nothing

    here = verdicts_here()
    alone = subprocess.run(
        [sys.executable, "-c", VERDICTS, json.dumps(ADDRESSES)],
        capture_output=True,
        text=True,
        check=True,
    )

    assert here == json.loads(alone.stdout)
    assert [v[0] for v in here].count("ok") >= 5
    assert [v[0] for v in here].count("error") >= 5


def test_the_decoder_caches_domains_and_still_refuses_a_bad_address() -> None:
    good = encode_event(upserted(customer(1), 1))
    decode_event(good)
    decode_event(good)
    check = sys.modules["email_validator.validate_email"].validate_email_domain_name
    assert getattr(check, "__wrapped_by_replication__", False)

    bad = good.replace(b'"customer1@example.com"', b'"customer1@-bad-.example"')
    assert bad != good
    with pytest.raises(InvalidEventError, match="email: value is not a valid email address"):
        decode_event(bad)
