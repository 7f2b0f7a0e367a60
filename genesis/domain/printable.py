"""Control characters made visible: one rule for every place outside text is shown or logged.

A request path may carry ``%0d%0a`` (decoded: CR LF), a name an ANSI escape sequence or a
bidirectional override; written as they are, they forge log lines or rewrite the terminal. Here
each such character (C0 and C1 controls, DEL, the Unicode line and paragraph separators, bidi
controls) becomes ``\\xNN`` or ``\\uNNNN``, so one value stays one visible piece of one line.

:func:`for_log` is what every log line built from a request uses (the API's authentication and
error logs); :func:`genesis.cli.common.safe` builds on :func:`escape_controls` for the consoles.
"""

from __future__ import annotations

import re

_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
LOG_VALUE_MAX = 300
"""Longest value :func:`for_log` writes (characters, before escaping); longer ones are cut, marked ``...``."""


def _escaped(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(value: object, keep: str = "") -> str:
    """``str(value)`` with every control character except those in ``keep`` written as ``\\xNN``/``\\uNNNN``."""
    return _CONTROLS.sub(lambda m: m.group() if m.group() in keep else _escaped(m.group()), str(value))


def for_log(value: object, limit: int = LOG_VALUE_MAX) -> str:
    """A value that came with a request (path, method, address, message), safe in one log line:
    no control character (CR and LF included) and at most ``limit`` characters of it."""
    text = str(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    return escape_controls(text)
