"""Camera credentials never leave the process: one function for every place a source is shown,
logged or stored for display (``runs.source``, the API, the CLI, capture logs, /status).

``rtsp://admin:secret@10.0.0.5/stream`` becomes ``rtsp://***@10.0.0.5/stream`` (the user name
goes too: it is half of the credential), and the values of query parameters that carry secrets
(``?user=admin&password=secret``) become ``***``. Works on a bare URL and on any text that
contains URLs (an error message).
"""

from __future__ import annotations

import re

MASK = "***"
_USERINFO = re.compile(r"(?P<scheme>\b[a-z][a-z0-9+.-]*://)(?P<userinfo>[^\s/@?#:]*(?::[^\s/?#]*)?)@", re.I)
_SECRET_QUERY = re.compile(
    r"(?P<key>[?&;](?:user(?:name)?|login|pass(?:word)?|passwd|pwd|token|access_token|api_?key|key|secret|auth"
    r"|authorization|signature|sig|credentials?)=)(?P<value>[^&#\s]*)", re.I)


def redact(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced by ``***``."""
    if "://" not in text and "=" not in text:
        return text
    out = _USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)
    return _SECRET_QUERY.sub(lambda m: f"{m.group('key')}{MASK}" if m.group("value") else m.group(0), out)


def redact_opt(text: str | None) -> str | None:
    return None if text is None else redact(text)
