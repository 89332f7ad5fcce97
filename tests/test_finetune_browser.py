"""The Fine-tune tab in a real browser: a CSV with two bad rows is checked, a one-epoch
job is started on the rest, its progress and before/after table appear, and the new
version is activated and rolled back; the same for a zip of labelled video clips. Only
the tab is served (in-process, on a free port, no sign-in: the local user is admin)."""
import re

import pytest

from .conftest import ARTIFACTS, chromium_page, needs_chromium, needs_data
from .test_finetune import carer_csv, stop_leftover_jobs  # noqa: F401 - autouse fixture
from .test_finetune_video import clips, manifest_zip  # noqa: F401 - fixture

pytestmark = [pytest.mark.browser, needs_chromium]
expect = pytest.importorskip("playwright.sync_api").expect


@pytest.fixture
def served():
    import gradio as gr

    from emotion_app.app import access
    from emotion_app.app.finetune import build as build_finetune_tab

    with gr.Blocks() as demo:
        with gr.Tab("Fine-tune"):
            refresh, outputs = build_finetune_tab()
        access.on(demo.load, refresh, None, outputs, with_user=True)  # as app.py does: lists and polling for admins
    demo.queue()
    demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    yield demo.local_url
    demo.close()


def wait_text(page, elem_id, text, timeout=180_000):
    page.locator(f"#{elem_id}").filter(has_text=text).wait_for(timeout=timeout)


@needs_data
def test_upload_check_train_compare_activate_and_roll_back(served, tmp_path):
    upload = carer_csv(tmp_path / "labelled.csv", per_class=5)
    with open(upload, "a", encoding="utf-8") as f:
        f.write("i feel nothing in particular,meh\n,joy\n")
    with chromium_page(served, height=1800) as page:
        page.locator("#ft-upload input[type=file]").set_input_files(str(upload))
        page.locator("#ft-check").click()
        wait_text(page, "ft-report", "2 problem(s)")
        assert "unknown emotion label 'meh'" in page.locator("#ft-report").inner_text()

        page.locator("#ft-epochs input[type=number]").fill("1")
        page.locator("#ft-epochs input[type=number]").press("Enter")
        page.locator("#ft-limit input").fill("10")
        page.locator("#ft-start").click()
        wait_text(page, "ft-report", "submitted")
        wait_text(page, "ft-status", "done")
        assert "queued" not in page.locator("#ft-report").inner_text()  # no state word left to go stale
        page.locator("#ft-plot .js-plotly-plot").wait_for()
        wait_text(page, "ft-compare", "upload_heldout")
        expect(page.locator("#ft-log textarea")).to_have_value(re.compile(r"\d\d:\d\d:\d\d done"))  # read, not JSON
        assert '"event"' not in page.locator("#ft-log textarea").input_value()
        page.screenshot(path=str(ARTIFACTS / "finetune-done.png"), full_page=True)

        page.locator("#ft-activate").click()
        wait_text(page, "ft-action", "text-ensemble-ft@1 is now the active text model")
        wait_text(page, "ft-status", "Active text model: text-ensemble-ft@1")
        page.locator("#ft-rollback").click()
        wait_text(page, "ft-action", "text-ensemble@1 is the active text model again")


def test_labelled_clips_fine_tune_face_voice_and_fusion_from_one_upload(served, clips, tmp_path):  # noqa: F811
    folder, rows = clips
    upload = manifest_zip(tmp_path / "clips.zip", folder, rows)
    with chromium_page(served, height=1800) as page:
        page.locator("#ft-modality input").click()
        page.get_by_role("option", name="video").click()
        page.locator("#ft-upload input[type=file]").set_input_files(str(upload))
        page.locator("#ft-epochs input[type=number]").fill("1")
        page.locator("#ft-epochs input[type=number]").press("Enter")
        page.locator("#ft-limit input").fill("4")
        page.locator("#ft-start").click()
        wait_text(page, "ft-report", "submitted")
        wait_text(page, "ft-status", "done", timeout=300_000)
        wait_text(page, "ft-compare", "upload_heldout_voice")  # before/after fused (upload_heldout), face and voice
        page.screenshot(path=str(ARTIFACTS / "finetune-video-done.png"), full_page=True)
        page.locator("#ft-activate").click()
        wait_text(page, "ft-action", "is now the active fusion model")
        page.locator("#ft-rollback").click()
        wait_text(page, "ft-action", "active")
