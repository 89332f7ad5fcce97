import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from contextlib import contextmanager

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from . import postgres  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("EMOTION_DATA", ROOT.parent / "shared" / "data"))
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data not found at {DATA}")


@pytest.fixture(autouse=True)
def isolated_user_data(tmp_path, monkeypatch):
    """Every test gets its own user data folder, so active-model choices and
    annotations never leak between tests or into the developer's ./data (or the
    developer's DATABASE_URL: a test that wants PostgreSQL uses ``postgres_url``)."""
    monkeypatch.setenv("EMOTION_APP_DATA", str(tmp_path / "user-data"))
    monkeypatch.delenv("DATABASE_URL", raising=False)


@pytest.fixture(scope="session")
def postgres_server():
    """The socket folder of a throwaway PostgreSQL server, started once per session when
    a test asks for one."""
    bin_dir = postgres.binaries()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (./setup.sh installs Debian's postgresql)")
    with postgres.throwaway_server(bin_dir) as socket_folder:
        yield socket_folder


@pytest.fixture
def postgres_url(postgres_server):
    """A fresh, empty database on the throwaway server, dropped after the test."""
    import sqlalchemy as sa
    name = f"test_{uuid.uuid4().hex}"
    admin = sa.create_engine(postgres.url(postgres_server, "postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield postgres.url(postgres_server, name)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
    admin.dispose()


CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed (./setup.sh installs it)")


@contextmanager
def chromium_browser(extra_args: tuple = ()):
    """Debian's headless Chromium (never a downloaded browser); each ``open_page`` is its
    own context, with its own cookies: one signed-in user each."""
    from playwright.sync_api import sync_playwright
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", *extra_args])
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser, url: str, height: int = 1000, sign_in: tuple[str, str] | None = None):
    """A page in a fresh context, at ``url``, signed in through Gradio's login form if asked."""
    page = browser.new_context(viewport={"width": 1280, "height": height}).new_page()
    page.set_default_timeout(90_000)
    page.goto(url)
    if sign_in:
        page.get_by_label("username").fill(sign_in[0])
        page.get_by_label("password").fill(sign_in[1])
        page.get_by_role("button", name="Login").click()
        page.locator("#signed-in, #annotate-who").filter(has_text=sign_in[0]).first.wait_for()
    return page


@contextmanager
def chromium_page(url: str, height: int = 1000, extra_args: tuple = (), sign_in: tuple[str, str] | None = None):
    """One page of headless Chromium opened at ``url``."""
    with chromium_browser(extra_args) as browser:
        yield open_page(browser, url, height, sign_in)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def app_server(tmp_path_factory, **env_extra):
    """``python app.py`` on a free local port, with its own data folder; yields its URL."""
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "EMOTION_APP_DATA": str(tmp_path_factory.mktemp("app-data")), **env_extra}
    log = open(tmp_path_factory.mktemp("log") / "app.log", "w+")
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"app exited: {log.read()[-3000:]}")
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("app did not start within 120 s")
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
