"""The app in a real browser: ``python app.py`` served locally, driven by Playwright in
Debian's Chromium. Screenshots land in test-artifacts/ for a person to look at."""
import pytest

from .conftest import ARTIFACTS, app_server, chromium_page, needs_chromium

pytestmark = [pytest.mark.browser, needs_chromium]
expect = pytest.importorskip("playwright.sync_api").expect


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with app_server(tmp_path_factory) as url:
        yield url


@pytest.fixture(scope="module")
def page(server):
    with chromium_page(server) as page:
        page.wait_for_selector("button[role=tab]")
        yield page


def open_tab(page, name):
    page.get_by_role("tab", name=name, exact=True).click()


def shot(page, name):
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def run_and_read(page, target, elem_id, expected):
    """Click a button (its id) or an example (a locator), wait until the Markdown output
    changes and shows ``expected``."""
    locator = page.locator(f"#{elem_id}")
    before = locator.inner_text()
    (page.locator(f"#{target}") if isinstance(target, str) else target).click()
    page.wait_for_function(
        "([sel, before, expected]) => { const t = document.querySelector(sel).innerText;"
        " return t !== before && t.includes(expected); }", arg=[f"#{elem_id}", before, expected])
    return locator.inner_text()


def test_every_tab_loads(page):
    page.get_by_role("tab", name="Fine-tune").wait_for()  # shown once the page knows who this is (here: admin)
    tabs = [t.inner_text() for t in page.query_selector_all("button[role=tab]")]
    assert tabs == ["Image", "Text", "Audio", "Video", "Tri-modal", "Annotate", "Fine-tune", "Models", "Live"]
    for name in tabs:
        open_tab(page, name)
        page.wait_for_timeout(300)
        shot(page, f"tab-{name.lower()}")


def test_text_examples_give_a_label_and_a_chart(page):
    open_tab(page, "Text")
    examples = page.locator("#text-examples tbody tr")
    for i in range(examples.count()):  # an example runs when clicked
        text = run_and_read(page, examples.nth(i), "text-msg", "utterances" if i == 3 else "model")
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


def test_audio_example_shows_transcript_timeline_and_fusion(page):
    open_tab(page, "Audio")
    text = run_and_read(page, page.locator("#audio-examples").get_by_text("speech_happy.wav"), "audio-msg", "Transcript")
    assert "happy" in text.lower() or "job" in text.lower()
    page.locator("#audio-timeline .js-plotly-plot").wait_for()
    page.locator("#audio-plot .js-plotly-plot").wait_for()
    shot(page, "audio-example")


def test_models_tab_shows_cards_and_switches(page):
    open_tab(page, "Models")
    expect(page.locator("#models")).to_contain_text("text-tfidf-lr@1")
    page.locator("#model-pick input").click()
    page.get_by_role("option", name="text-tfidf-lr@1").click()
    page.locator("#card-md").filter(has_text="Evaluation").wait_for()
    page.locator("#card-plot .js-plotly-plot").wait_for()
    assert "now the active text model" in run_and_read(page, "activate-btn", "models-msg", "active")
    shot(page, "models-card")


def test_image_example_draws_faces_and_bars(page):
    open_tab(page, "Image")
    text = run_and_read(page, page.locator("#image-examples button").nth(1), "image-msg", "face")  # two_faces.jpg
    assert "2 face(s) found" in text
    page.locator("#image-plot .js-plotly-plot").wait_for()
    page.locator("#image-out img").wait_for()
    shot(page, "image-example")


def test_image_upload_of_a_file(page, tmp_path):
    from PIL import Image
    from skimage import data
    photo = tmp_path / "upload.png"
    Image.fromarray(data.astronaut()).save(photo)
    open_tab(page, "Image")
    page.locator("#image-in input[type=file]").set_input_files(str(photo))
    assert "1 face(s) found" in run_and_read(page, "image-btn", "image-msg", "1 face")


def test_video_example_gives_timeline_and_gallery(page):
    open_tab(page, "Video")
    text = run_and_read(page, page.locator("#video-examples button").first, "video-msg", "Fused")  # astronaut_happy.mp4
    box = page.locator("#video-in").bounding_box()
    assert box["height"] <= 420  # the player leaves the results in view
    assert "face" in text
    page.locator("#video-timeline .js-plotly-plot").wait_for()
    page.locator("#video-faces img").first.wait_for()
    shot(page, "video-example")


def test_trimodal_slider_changes_the_fused_chart_without_rerunning(page):
    open_tab(page, "Tri-modal")
    first = run_and_read(page, page.locator("#tri-examples tbody tr").first, "tri-msg", "Fused")
    page.locator("#tri-plot .js-plotly-plot").wait_for()
    slider = page.locator("#s-text input[type=number]")
    slider.fill("0")
    slider.press("Enter")
    assert "text 0." in first
    # the fused result is recomputed from the stored probabilities, without the text
    page.wait_for_function("(sel) => { const t = document.querySelector(sel).innerText;"
                           " return t.includes('Fused') && t.includes('weights') && !t.includes('text 0.'); }",
                           arg="#tri-msg")
    shot(page, "trimodal-slider")
    page.locator("#tri-method input").click()
    page.get_by_role("option", name="gated").click()  # a learned method ignores the sliders: they are disabled
    expect(page.locator("#s-text input[type=number]")).to_be_disabled()
    page.locator("#tri-method input").click()
    page.get_by_role("option", name="late").click()
    expect(page.locator("#s-text input[type=number]")).to_be_enabled()


def test_unreadable_image_is_named_and_left_out_of_the_trimodal_result(page, tmp_path):
    bad = tmp_path / "holiday.jpg"
    bad.write_bytes(b"not a picture at all")
    open_tab(page, "Tri-modal")
    page.locator("#tri-image input[type=file]").set_input_files(str(bad))
    page.locator("#tri-text textarea").fill("We won the final, I'm so happy!")
    run_and_read(page, "tri-btn", "tri-msg", "left out")  # runs after the example: new text only
    page.locator("#tri-msg").filter(has_text="Fused").wait_for()  # step 2 keeps step 1's message under the result
    text = page.locator("#tri-msg").inner_text()
    weights = text.split("weights", 1)[1].split("\n", 1)[0]
    assert "face left out: holiday.jpg: not a readable image" in text and "face" not in weights
    shot(page, "trimodal-unreadable-image")


def test_chart_axis_labels_fit_on_a_phone_width_screen(page):
    page.set_viewport_size({"width": 390, "height": 844})
    try:
        open_tab(page, "Text")
        page.locator("#dialogue input").set_checked(False)
        page.locator("#text-in textarea").fill("I can't believe they cancelled the trip, I'm furious.")
        run_and_read(page, "text-btn", "text-msg", "model")
        page.locator("#text-plot .js-plotly-plot .ytick text").first.wait_for()
        cut = page.evaluate("""() => {
            const plot = document.querySelector('#text-plot .js-plotly-plot .main-svg').getBoundingClientRect();
            return [...document.querySelectorAll('#text-plot .xtick text, #text-plot .ytick text')]
              .map(t => [t.textContent, t.getBoundingClientRect()])
              .filter(([_, r]) => r.left < plot.left - 1 || r.right > plot.right + 1 || r.bottom > plot.bottom + 1)
              .map(([text]) => text); }""")
        assert cut == []
        shot(page, "text-phone-width")
    finally:
        page.set_viewport_size({"width": 1280, "height": 1000})
