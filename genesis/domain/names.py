"""The one rule for names that people type: identity names (CLI enroll, API enroll, naming an
unknown cluster, rename) and API key names. The API's rule, applied wherever a name enters, so
that every stored name can be shown safely and addressed by the API (``/api/identities/{name}``).

A name is stripped of surrounding whitespace and must then be 1 to :data:`MAX_NAME` characters,
without control characters (C0, DEL, C1: terminal escape sequences), bidirectional overrides,
lone surrogates (PostgreSQL refuses them) or ``/`` (a path separator: the API could not address
it), and not ``.`` or ``..`` (clients rewrite those path segments). Identity names also must not
be ``unknown`` or ``unknown-...``, which name people nobody enrolled.
"""

from __future__ import annotations

import re

MAX_NAME = 128
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff/]")


class InvalidNameError(ValueError):
    """A name that breaks the rule; the message says why."""


def check_label(value: str, what: str = "name") -> str:
    """``value`` stripped, if it follows the rule (see the module docstring); InvalidNameError if not."""
    name = value.strip()
    if not name:
        raise InvalidNameError(f"the {what} is empty")
    if len(name) > MAX_NAME:
        raise InvalidNameError(f"the {what} is longer than {MAX_NAME} characters")
    bad = _FORBIDDEN.search(name)
    if bad:
        char = bad.group()
        shown = "/" if char == "/" else f"U+{ord(char):04X}"
        raise InvalidNameError(f"the {what} must not contain control characters or '/' (found {shown})")
    if name in (".", ".."):
        raise InvalidNameError(f"the {what} must not be '.' or '..'")
    return name


def check_identity_name(value: str) -> str:
    """An identity name: :func:`check_label` and not a reserved ``unknown`` name."""
    name = check_label(value, "identity name")
    if name.lower() == "unknown" or name.lower().startswith("unknown-"):
        raise InvalidNameError(f"{name!r} is reserved for people who are not enrolled")
    return name
