"""Headless Chromium from the system's packages, driven by Playwright (tests and the screenshot script)."""

from __future__ import annotations

import os
import shutil
from typing import Any

# Without the networking switches Chromium keeps trying to reach Google services (refused on closed networks).
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium_path() -> str | None:
    """The system Chromium (Debian's ``chromium`` package), or ``$SYNTHCALIB_CHROMIUM``."""
    explicit = os.environ.get("SYNTHCALIB_CHROMIUM")
    if explicit:
        return explicit if os.path.exists(explicit) else None
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def launch(playwright: Any) -> Any:
    """A headless Chromium browser from ``playwright.sync_api.sync_playwright()``."""
    path = chromium_path()
    if path is None:
        raise RuntimeError("no Chromium found: apt-get install chromium (or set SYNTHCALIB_CHROMIUM)")
    return playwright.chromium.launch(executable_path=path, args=list(CHROMIUM_ARGS))
