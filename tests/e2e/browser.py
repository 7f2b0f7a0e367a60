"""Chromium for the browser tests: one launch, and navigation that survives the machine's interfaces changing.

Chromium aborts a navigation with ``net::ERR_NETWORK_CHANGED`` when an interface of the host appears or goes,
which a container test running beside it does (podman adds a bridge and veth pairs). That says nothing about the
page, so `goto` navigates again (at most ``NAVIGATION_TRIES`` times); any other error is raised as it is."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the tests import playwright when they run (chromium_or_skip first)
    from playwright.sync_api import Browser, Page, Playwright, Response

NETWORK_CHANGED = "net::ERR_NETWORK_CHANGED"
NAVIGATION_TRIES = 3


def launch(p: Playwright, chromium: Path) -> Browser:
    return p.chromium.launch(executable_path=str(chromium), headless=True,
                             args=["--no-sandbox", "--disable-dev-shm-usage"])


def goto(page: Page, url: str, **kwargs: Any) -> Response | None:
    """``page.goto(url)``, again when Chromium gave up on it because the host's network changed."""
    from playwright.sync_api import Error as PlaywrightError

    for attempt in range(1, NAVIGATION_TRIES + 1):
        try:
            return page.goto(url, **kwargs)
        except PlaywrightError as exc:
            if NETWORK_CHANGED not in str(exc) or attempt == NAVIGATION_TRIES:
                raise
            time.sleep(0.5)
    raise AssertionError("unreachable")
