"""E-mail validation sped up: the same verdicts as pydantic and email_validator alone."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import networks
from pydantic.networks import validate_email
from pydantic_core import PydanticCustomError

from replication.email_domains import _shortcut, cache_domain_checks, shortcut_plain_addresses
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


# -- the plain-address shortcut -----------------------------------------------------------

LOCAL_PARTS = st.one_of(
    st.text(alphabet="abXY09.!#$%&'*+/=?^_`{|}~-\"@ <>(),;:\\üé\t", max_size=70),
    st.sampled_from(
        ["ada", "Ada.Lovelace", "postmaster", "Abuse", "info", "a" * 64, "a" * 65, ".a", "a."]
    ),
)
DOMAINS = st.one_of(
    st.text(alphabet="abXY09.-_[]@ üé", max_size=70),
    st.sampled_from(
        [
            "example.com",
            "EXAMPLE.com",
            "xn--bcher-kva.example",
            "xn--zz.example",
            "localhost",
            "a.test",
            "x.invalid",
            "host.local",
            "1.2.3.4",
            "example.123",
            "-a.example",
            "a" * 63 + ".com",
            "a" * 64 + ".com",
            ("a" * 63 + ".") * 3 + "a" * 61,
            ("b" * 60 + ".") * 4 + "com",
        ]
    ),
)
ADDRESS_TEXT = st.one_of(
    st.builds(lambda local, domain: f"{local}@{domain}", LOCAL_PARTS, DOMAINS),
    st.text(max_size=30),
)


def verdict(validate: Callable[[str], tuple[str, str]], address: str) -> list[object]:
    try:
        return ["ok", list(validate(address))]
    except PydanticCustomError as exc:
        return ["error", str(exc)]


def installed_shortcut() -> Callable[[str], tuple[str, str]]:
    validate_email("warm@example.com")  # pydantic imports email_validator
    assert shortcut_plain_addresses()
    assert shortcut_plain_addresses()  # once is enough; again changes nothing
    shortcut: Callable[[str], tuple[str, str]] = networks.validate_email
    assert getattr(shortcut, "__wrapped_by_replication__", False)
    return shortcut


@settings(max_examples=1500, deadline=None)
@given(address=ADDRESS_TEXT)
def test_the_shortcut_answers_every_address_as_pydantic_alone(address: str) -> None:
    shortcut = installed_shortcut()
    original = shortcut.__wrapped__  # type: ignore[attr-defined]

    assert verdict(shortcut, address) == verdict(original, address)


PLAIN = ["ada@example.com", "Ada.Lovelace+x@EXAMPLE.com", "a@xn--bcher-kva.example"]
NOT_PLAIN = [
    "Ada <ada@example.com>",  # a display name
    '"quoted"@example.com',
    "ü@example.com",
    "ada@bücher.example",
    "Postmaster@example.com",  # lower-cased by email_validator
    "a" * 65 + "@example.com",  # over 64 before the @-sign (allowed unless strict)
    "ada@[127.0.0.1]",
    " ada@example.com",
    "ada@-bad-.example",  # refused by the domain check: the original words the error
    "ada@localhost",
]


def test_plain_addresses_take_the_shortcut_and_the_rest_reach_pydantic() -> None:
    installed_shortcut()
    reached: list[str] = []
    original = networks.validate_email.__wrapped__  # type: ignore[attr-defined]

    def spy(value: str) -> tuple[str, str]:
        reached.append(value)
        result: tuple[str, str] = original(value)
        return result

    library = sys.modules["email_validator"]
    shortcut = _shortcut(
        spy,
        library,
        sys.modules["email_validator.validate_email"],
        sys.modules["email_validator.rfc_constants"],
    )
    answers = {a: verdict(shortcut, a) for a in [*PLAIN, *NOT_PLAIN]}

    assert reached == NOT_PLAIN
    assert answers == {a: verdict(original, a) for a in answers}
    assert answers["Ada.Lovelace+x@EXAMPLE.com"] == [
        "ok",
        ["Ada.Lovelace+x", "Ada.Lovelace+x@example.com"],
    ]
    assert answers["a@xn--bcher-kva.example"] == ["ok", ["a", "a@bücher.example"]]
    assert answers["ada@-bad-.example"][0] == "error"
