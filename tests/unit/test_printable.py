"""One rule for control characters in what is logged or printed (issue 23, item 11)."""

from __future__ import annotations

import logging

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from genesis.api.errors import install_error_handlers
from genesis.cli.common import safe
from genesis.domain.printable import LOG_VALUE_MAX, escape_controls, for_log


def test_for_log_leaves_no_control_character() -> None:
    forged = "/api/me\r\nFORGED authentication succeeded\x1b[31m\u2028\u202e\x00\x7f\x9b"
    out = for_log(forged)
    assert out == "/api/me\\x0d\\x0aFORGED authentication succeeded\\x1b[31m\\u2028\\u202e\\x00\\x7f\\x9b"
    assert out.isprintable()
    assert for_log("x" * 1000) == "x" * LOG_VALUE_MAX + "..."
    assert for_log("café /api/identities/Zoë") == "café /api/identities/Zoë"


def test_the_cli_keeps_tabs_and_newlines_and_escapes_the_rest() -> None:
    assert escape_controls("a\tb\nc\rd", keep="\t\n") == "a\tb\nc\\x0dd"
    assert safe("[bold]x\x1b[2J\n") == "\\[bold]x\\x1b[2J\n"


def test_an_unhandled_error_is_logged_without_forged_lines(caplog: pytest.LogCaptureFixture) -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom/{value}")
    def boom(value: str) -> None:
        raise ValueError(f"bad value {value}")

    with TestClient(app, raise_server_exceptions=False) as c, caplog.at_level(logging.ERROR, "genesis.api"):
        assert c.get("/boom/x%0d%0aFORGED%20line").status_code == 500
    (record,) = [r for r in caplog.records if r.name == "genesis.api"]
    text = record.getMessage()
    assert not [ln for ln in text.splitlines() if ln.startswith("FORGED")], text
    assert "/boom/x\\x0d\\x0aFORGED line" in text and "bad value x\\x0d\\x0aFORGED line" in text
    assert "Traceback (most recent call last):" in text and "in boom" in text and record.exc_info is None
