"""Headless Chromium for the console's browser tests (tests/e2e/test_console.py): Debian's
chromium (/usr/bin/chromium, which `make test` installs with apt) driven by Playwright's
Python package (pinned in pyproject.toml's dev extra). Playwright's own browser download
(`playwright install`) is never used: it cannot run on a machine whose network reaches only
the package registries."""

from __future__ import annotations

import contextlib
import io
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, ViewportSize

CHROMIUM = Path("/usr/bin/chromium")
# --disable-background-networking and friends: Chromium's own calls home (component updates,
# sync, Google host lookups at start) are refused by a closed network, many at a time.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
VIEWPORT: ViewportSize = {"width": 1400, "height": 1000}
MISSING = ("{what} is missing: `make test` installs it (Debian's chromium with apt, the "
           "playwright package into .venv from pyproject.toml's dev extra)")


def missing() -> str | None:
    """Why the browser cannot start here, or None: the tests fail with this, never skip."""
    if not CHROMIUM.exists() and shutil.which("chromium") is None:
        return MISSING.format(what=str(CHROMIUM))
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return MISSING.format(what="The Python package playwright")
    return None


def executable() -> str:
    return str(CHROMIUM) if CHROMIUM.exists() else str(shutil.which("chromium"))


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """One headless Chromium (Playwright's sync API), closed after the block."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable(), headless=True,
                                             args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def screenshot(page: Page, path: Path) -> None:
    """The whole page as a PNG of 256 colours (a page of text and flat boxes loses nothing
    visible; the file is about a third of the size: the README shows it from the repo)."""
    from PIL import Image

    shot = Image.open(io.BytesIO(page.screenshot(full_page=True)))
    path.parent.mkdir(parents=True, exist_ok=True)
    shot.convert("RGB").quantize(colors=256).save(path, optimize=True)
