import os
from contextlib import contextmanager

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("EMOTION_DATA", ROOT.parent / "shared" / "data"))
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data not found at {DATA}")


@pytest.fixture(autouse=True)
def isolated_user_data(tmp_path, monkeypatch):
    """Every test gets its own user data folder, so active-model choices and
    annotations never leak between tests or into the developer's ./data."""
    monkeypatch.setenv("EMOTION_APP_DATA", str(tmp_path / "user-data"))


CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed (./setup.sh installs it)")


@contextmanager
def chromium_page(url: str, height: int = 1000):
    """A page of Debian's headless Chromium (never a downloaded browser) opened at ``url``."""
    from playwright.sync_api import sync_playwright
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": height})
            page.set_default_timeout(90_000)
            page.goto(url)
            yield page
        finally:
            browser.close()
