"""Headless Chromium for the tests that check pages in a real browser (the live view, the screening report).

``from browser import headless_chromium``: a selenium ``webdriver.Chrome`` on Debian's ``chromium`` and
``chromium-driver`` (``scripts/setup.sh`` installs them where it can), or a skip with the reason when
selenium or the browser is missing. No network, no profile of the user's: a throw-away profile per test.
"""
from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def headless_chromium(tmp_path, window: str = "1200,800"):
    """A started headless Chromium driver (the caller quits it), its profile under ``tmp_path``."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the dev extra)")
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.skip("Chromium or chromedriver missing (Debian: apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              f"--user-data-dir={tmp_path / 'chromium-profile'}", f"--window-size={window}"):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
