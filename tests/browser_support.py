"""What the browser tests share: Debian's Chromium, driven headless by Playwright with these flags."""

from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]


def require_browser():
    """Playwright's sync API, or a skip of the calling test module when Playwright or Chromium is missing."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip("no Chromium at /usr/bin/chromium", allow_module_level=True)
    return sync_api
