"""The app in a real browser: ``python app.py`` served locally, driven by Playwright in
Debian's Chromium. Screenshots land in test-artifacts/ for a person to look at."""
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from .conftest import ROOT

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} not installed (./setup.sh installs it)", allow_module_level=True)
playwright = pytest.importorskip("playwright.sync_api")
sync_playwright, expect = playwright.sync_playwright, playwright.expect


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "EMOTION_APP_DATA": str(tmp_path_factory.mktemp("app-data"))}
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
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def page(server):
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(90_000)
        page.goto(server)
        page.wait_for_selector("button[role=tab]")
        yield page
        browser.close()


def open_tab(page, name):
    page.get_by_role("tab", name=name, exact=True).click()


def shot(page, name):
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def run_and_read(page, button_id, elem_id, expected):
    """Click a button, wait until the Markdown output changes and shows ``expected``."""
    locator = page.locator(f"#{elem_id}")
    before = locator.inner_text()
    page.locator(f"#{button_id}").click()
    page.wait_for_function(
        "([sel, before, expected]) => { const t = document.querySelector(sel).innerText;"
        " return t !== before && t.includes(expected); }", arg=[f"#{elem_id}", before, expected])
    return locator.inner_text()


def test_every_tab_loads(page):
    tabs = [t.inner_text() for t in page.query_selector_all("button[role=tab]")]
    assert tabs == ["Image", "Text", "Audio", "Video", "Tri-modal", "Annotate", "Fine-tune", "Models"]
    for name in tabs:
        open_tab(page, name)
        page.wait_for_timeout(300)
        shot(page, f"tab-{name.lower()}")


def test_text_examples_give_a_label_and_a_chart(page):
    open_tab(page, "Text")
    examples = page.locator("#text-examples tbody tr")
    for i in range(examples.count()):
        examples.nth(i).click()
        text = run_and_read(page, "text-btn", "text-msg", "utterances" if i == 3 else "model")
        assert "**" not in text  # Markdown rendered
        page.locator("#text-plot .js-plotly-plot").wait_for()
    for turn in ("I got the tickets!", "Wait, you got them?", "Front row.", "Oh my God, I love you!"):
        expect(page.locator("#text-rows")).to_contain_text(turn)  # one row per dialogue turn
    shot(page, "text-dialogue")


def test_text_empty_input_gives_a_clear_message(page):
    open_tab(page, "Text")
    page.locator("#dialogue input").set_checked(False)
    page.locator("#text-in textarea").fill("   ")
    assert "empty text" in run_and_read(page, "text-btn", "text-msg", "empty text")


def test_models_tab_shows_cards_and_switches(page):
    open_tab(page, "Models")
    expect(page.locator("#models")).to_contain_text("text-tfidf-lr@1")
    page.locator("#model-pick input").click()
    page.get_by_role("option", name="text-tfidf-lr@1").click()
    page.locator("#card-md").filter(has_text="Evaluation").wait_for()
    page.locator("#card-plot .js-plotly-plot").wait_for()
    assert "now the active text model" in run_and_read(page, "activate-btn", "models-msg", "active")
    shot(page, "models-card")
