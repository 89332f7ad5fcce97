"""The Annotate tab in a real browser, with sign-in: three items labelled by an annotator
with keyboard shortcuts, one undone and relabelled, then exported by an admin in another
browser context. Only the tab is served (in-process, on a free port), so the test needs
no model but the bundled text one."""
import re
import time

import numpy as np
import pytest

from .conftest import ARTIFACTS, chromium_browser, chromium_page, needs_chromium, open_page

pytestmark = [pytest.mark.browser, needs_chromium]


ALICE, BOB, ROOT = ("alice", "alice-password"), ("bob", "bob-password"), ("root", "root-password")


@pytest.fixture
def served(tmp_path, monkeypatch):
    import gradio as gr
    from PIL import Image

    from emotion_app.annotation import AnnotationStore
    from emotion_app.app import access
    from emotion_app.app.annotate import build as build_annotate_tab
    from emotion_app.models.registry import set_active

    monkeypatch.setenv("EMOTION_APP_USERS", str(tmp_path / "users.json"))
    access.add_user(*ALICE, "annotator", ["demo"])
    access.add_user(*BOB, "annotator")
    access.add_user(*ROOT, "admin")

    set_active("text", "text-tfidf-lr")  # the small bundled model, in this test's own data folder

    store = AnnotationStore(tmp_path / "annotations")
    picture = tmp_path / "face.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(picture)
    texts = tmp_path / "texts.txt"
    texts.write_text("I am so happy, we won the cup!\nGet out of my house, I hate you!\n")
    assert len(store.import_paths("demo", [picture, texts]).added) == 3
    with gr.Blocks() as demo:
        with gr.Tab("Annotate"):
            refresh, outputs = build_annotate_tab(store)
        access.on(demo.load, refresh, None, outputs, with_user=True)
    demo.queue()
    demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, auth=access.password_check)
    yield store, demo.local_url
    demo.close()


def choose_queue(page, queue: str, start: bool = False) -> None:
    """Type a queue's name into the queue list (it takes names not yet listed), and press Start if asked."""
    queue_input = page.locator("#annotate-queue input")
    queue_input.fill(queue)
    queue_input.press("Enter")
    if start:
        page.locator("#annotate-start").click()


def import_lines(store, tmp_path, queue: str, lines: list[str]) -> None:
    """A queue of one text item per line."""
    path = tmp_path / f"{queue}.txt"
    path.write_text("".join(line + "\n" for line in lines))
    store.import_paths(queue, [path])


def test_label_three_items_by_keyboard_undo_one_and_export(served):
    from datasets import load_from_disk

    store, url = served
    with chromium_browser() as browser:
        page = open_page(browser, url, height=1100, sign_in=ALICE)
        assert not page.get_by_text("Add items / settings").is_visible()  # import and export are for admins
        choose_queue(page, "demo", start=True)

        item = page.locator("#annotate-item")
        item.filter(has_text="Item 1").wait_for()
        page.wait_for_function("document.querySelector('#annotate-image img')?.naturalWidth === 64")  # served, decoded
        # the image model's prediction, or a message saying why there is none
        page.locator("#annotate-prediction-msg").filter(has_text=re.compile("predicts|prediction")).wait_for()

        page.keyboard.press("5")  # neutral
        item.filter(has_text="Item 2").wait_for()
        page.locator("#annotate-text").filter(has_text="we won the cup").wait_for()
        page.locator("#annotate-prediction-msg").filter(has_text="text-tfidf-lr").wait_for()
        page.screenshot(path=str(ARTIFACTS / "annotate-item.png"), full_page=True)
        page.keyboard.press("4")  # happy
        item.filter(has_text="Item 3").wait_for()
        page.keyboard.press("6")  # sad: a slip...
        item.filter(has_text="Nothing left").wait_for()
        page.keyboard.press("z")  # ...undone
        page.locator("#annotate-progress").filter(has_text="Undid your last answer on item 3").wait_for()
        item.filter(has_text="Item 3").wait_for()
        page.keyboard.press("u")  # unsure, then angry
        page.locator("#annotate-unsure input").and_(page.locator(":checked")).wait_for()
        page.keyboard.press("1")
        item.filter(has_text="Nothing left").wait_for()
        page.locator("#annotate-progress").filter(has_text="3 of 3 items done").wait_for()

        admin = open_page(browser, url, height=1100, sign_in=ROOT)  # a second user, in their own context
        choose_queue(admin, "demo")
        admin.get_by_text("Export (admin)", exact=True).click()
        admin.locator("#annotate-export").click()
        admin.locator("#annotate-export-msg").filter(has_text="Exported 3 labelled items").wait_for()
        admin.screenshot(path=str(ARTIFACTS / "annotate-export.png"), full_page=True)

    exported = load_from_disk(str(next((store.root / "exports").iterdir()) / "dataset"))
    names = exported.features["label"].names
    assert [names[i] for i in exported["label"]] == ["neutral", "happy", "angry"]
    assert exported["annotators"] == [["alice"]] * 3
    assert exported["unsure"] == [[False], [False], [True]]
    undo = [h for h in store.history("demo") if h["action"] == "undo"]
    assert len(undo) == 1 and undo[0]["item_id"] == 3


def test_import_with_k_left_empty_and_queues_made_later_are_listed(served, tmp_path):
    store, url = served
    texts = tmp_path / "more.txt"
    texts.write_text("What a lovely surprise!\n")
    with chromium_page(url, sign_in=ROOT) as page:
        store.import_paths("made-later", [texts])  # e.g. sent from another tab after the page loaded
        page.locator("#annotate-queue input").click()
        page.get_by_role("option", name="made-later").wait_for()
        choose_queue(page, "uploads")
        settings = page.get_by_text("Add items / settings (admin)")
        settings.wait_for()  # shown once the page knows an admin is signed in
        settings.click()
        page.locator("#annotate-files input[type=file]").wait_for(state="attached")
        page.locator("#annotate-files input[type=file]").set_input_files(str(texts))
        page.locator("#annotate-files").filter(has_text="more.txt").wait_for()
        page.locator("#annotate-import").click()
        page.locator("#annotate-import-msg").filter(has_text="uploads: 1 item(s) added").wait_for()
        page.screenshot(path=str(ARTIFACTS / "annotate-import.png"), full_page=True)
    assert store.required_labels("uploads") == 1


def test_keys_pressed_as_fast_as_a_person_can_label_only_the_item_on_screen(served, tmp_path):
    store, url = served
    queue = "fast"
    import_lines(store, tmp_path, queue, ["first line", "second line", "third line"])
    with chromium_page(url, sign_in=BOB) as page:
        choose_queue(page, queue, start=True)
        page.locator("#annotate-text").filter(has_text="first line").wait_for()
        page.evaluate("""() => {  // the text on screen at each key press
            window.shownTexts = [];
            document.addEventListener('keydown',
              () => window.shownTexts.push(document.querySelector('#annotate-text').innerText), true);
        }""")
        for key in "123":  # angry, then disgust, then fear, faster than the next item can arrive
            page.keyboard.press(key)
        page.locator("#annotate-progress").filter(has_text=re.compile("you: [12] labelled")).wait_for()
        page.wait_for_timeout(2000)  # let any late event land
        shown = " ".join(page.evaluate("window.shownTexts"))
    labelled = {item.text: [v.label for v in votes] for item, votes in store.labelled_items(queue)}
    # the first item, on screen for the first key, is angry; any other item labelled was on screen when a key was
    # pressed (on a loaded machine the next item can arrive between two presses); one label each
    assert labelled["first line"] == ["angry"], labelled
    assert all(text in shown and len(votes) == 1 for text, votes in labelled.items()), (labelled, shown)


def test_a_second_label_button_clicked_before_the_next_item_is_not_sent(served, tmp_path):
    """As for keys: two quick clicks would be two requests that can reach the server in
    either order; the second never reaches its button, so the first click is what is stored."""
    store, url = served
    queue = "clicks"
    import_lines(store, tmp_path, queue, ["first line", "second line"])
    with chromium_page(url, sign_in=BOB) as page:
        choose_queue(page, queue, start=True)
        page.locator("#annotate-text").filter(has_text="first line").wait_for()
        page.locator("#annotate-prediction-msg").filter(has_text="predicts").wait_for()  # the layout is settled
        page.evaluate("""() => document.querySelector('#annotate-label-2')
            .addEventListener('click', () => { window.secondClickReached = true; })""")
        angry, disgust = (page.locator(f"#annotate-label-{i}").bounding_box() for i in (1, 2))
        for box in (angry, disgust):  # real clicks, a few ms apart: no answer can come back between them
            page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.locator("#annotate-text").filter(has_text="second line").wait_for()
        page.wait_for_timeout(1000)  # let any late event land
        assert not page.evaluate("window.secondClickReached")
    labelled = {item.text: [v.label for v in votes] for item, votes in store.labelled_items(queue)}
    assert labelled == {"first line": ["angry"]}, labelled


def test_instructions_hidden_pre_annotation_and_a_closed_page_gives_its_item_back(served, tmp_path):
    store, url = served
    queue = "leave"
    import_lines(store, tmp_path, queue, ["only line"])
    store.set_instructions(queue, "Label the **writer's** feeling. <img src=x onerror=alert(1)>")
    with chromium_browser() as browser:
        page = open_page(browser, url, sign_in=BOB)
        choose_queue(page, queue, start=True)
        page.locator("#annotate-text").filter(has_text="only line").wait_for()
        instructions = page.locator("#annotate-instructions")
        instructions.locator("strong", has_text="writer's").wait_for()
        assert instructions.locator("img").count() == 0 and "<img" in instructions.inner_text()  # HTML shown as text
        page.locator("#annotate-prediction-msg").filter(has_text="text-tfidf-lr").wait_for()
        page.locator("#annotate-hide-prediction input").check()
        page.locator("#annotate-prediction-msg").filter(has_text="pre-annotation is hidden").wait_for()
        assert "happy" not in page.locator("#annotate-prediction").inner_text().lower()
        assert store.next_item(queue, "carol") is None  # bob holds the only item while his page is open
        page.close()
        deadline = time.time() + 10  # the page's unload releases it at once, not after the lease
        while store.next_item(queue, "carol") is None and time.time() < deadline:
            time.sleep(0.25)
    assert store.next_item(queue, "carol") is not None


def test_an_admin_switches_a_queue_to_uncertainty_order_and_the_least_sure_item_comes_first(served):
    from emotion_app.core.labels import LABELS
    store, url = served
    queue = "uncertain"

    def probs(margin):  # happy leads neutral by ``margin``; the rest share what is left
        rest = (1 - (0.45 + margin / 2) - (0.45 - margin / 2)) / (len(LABELS) - 2)
        return {**dict.fromkeys(LABELS, rest), "happy": 0.45 + margin / 2, "neutral": 0.45 - margin / 2}

    for text, margin in (("a sure one", 0.85), ("a toss-up", 0.01), ("a fairly sure one", 0.5)):
        store.add_item_from_prediction("text", text, {"probs": probs(margin), "model": "text-tfidf-lr@1"}, queue)
    with chromium_browser() as browser:
        admin = open_page(browser, url, sign_in=ROOT)
        choose_queue(admin, queue)
        admin.get_by_text("Add items / settings (admin)").click()
        admin.locator("#annotate-order input").click()
        admin.get_by_role("option", name="margin").click()
        admin.locator("#annotate-set-order").click()
        admin.locator("#annotate-rescore").filter(has_text=re.compile("served in margin order.*done")).wait_for()
        admin.screenshot(path=str(ARTIFACTS / "annotate-order.png"), full_page=True)

        page = open_page(browser, url, sign_in=BOB)
        choose_queue(page, queue, start=True)
        page.locator("#annotate-text").filter(has_text="a toss-up").wait_for()
        page.keyboard.press("4")
        page.locator("#annotate-text").filter(has_text="a fairly sure one").wait_for()
        page.keyboard.press("4")
        page.locator("#annotate-text").filter(has_text="a sure one").wait_for()
    assert store.strategy(queue) == "margin"
