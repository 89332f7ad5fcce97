"""The Live tab: frames analysed one by one with a rolling trace, and in Chromium with a
fake camera that films the astronaut."""
from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest
from PIL import Image

from emotion_app.app.live import TRACE_SECONDS, analyse_frame, new_trace

from .conftest import ARTIFACTS, ROOT, app_server, chromium_page, needs_chromium
from .test_hosting import gray_png


def webcam_frame(face: bool = True) -> np.ndarray:
    frame = np.full((480, 640, 3), 90, np.uint8)
    if face:
        frame[60:420, 140:500] = np.asarray(Image.open(ROOT / "examples" / "astronaut.jpg").convert("RGB")
                                            .resize((360, 360)))
    return frame


def frame_file(folder, face: bool = True) -> str:
    """A webcam frame as the browser streams it: a JPEG, saved as a file by the component."""
    path = folder / f"frame_{face}.jpg"
    Image.fromarray(webcam_frame(face)).save(path, quality=80)
    return str(path)


def test_each_frame_is_boxed_labelled_and_added_to_the_trace(tmp_path):
    drawn, trace, chart, status = analyse_frame(frame_file(tmp_path), None)
    assert drawn.shape == (240, 320, 3) and status.startswith("1 face(s)")
    assert [len(faces) for _, faces in trace["frames"]] == [1]
    assert max(trace["frames"][0][1][0], key=trace["frames"][0][1][0].get) == "happy"
    assert [t.name for t in chart.data][:2] == ["angry", "disgust"]
    drawn, trace, chart, status = analyse_frame(frame_file(tmp_path, face=False), trace)
    assert "no face in view" in status and len(trace["frames"]) == 2


def test_the_trace_keeps_only_its_window(tmp_path):
    trace = new_trace()
    analyse_frame(frame_file(tmp_path), trace)
    trace["started"] -= TRACE_SECONDS + 5  # as if the first frame came 35 s ago
    analyse_frame(frame_file(tmp_path), trace)
    assert len(trace["frames"]) == 1


def test_a_frame_too_large_or_unreadable_is_refused_before_it_is_decoded(tmp_path):
    """A 13000x13000 grayscale PNG sent to /live cost the server 1.7 GB; a corrupt one
    answered with a raw error naming the server's path."""
    import time
    huge = gray_png(tmp_path / "huge_gray.png", 13_000, 13_000)
    start = time.perf_counter()
    drawn, trace, chart, status = analyse_frame(str(huge), None)
    assert time.perf_counter() - start < 1 and drawn is None and not trace["frames"]
    assert status.startswith("⚠️ huge_gray.png: frame is 13000x13000, over the 8,294,400 pixels of a 4K webcam")
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    status = analyse_frame(str(tmp_path / "corrupt.jpg"), None)[3]
    assert status.startswith("⚠️ corrupt.jpg: not a readable image") and str(tmp_path) not in status


def test_the_live_stream_is_wired_like_every_analysis():
    """Through ``access.on``: checked and counted per caller when it joins the queue, in
    the model work's shared slots, and stopped after the stream time limit (the wait for a
    frame from a stalled stream included: it held a slot for 300 s)."""
    import app as app_module
    from emotion_app.app import access
    live = next(fn for fn in app_module.build_app().fns.values() if fn.api_name == "live")
    assert live.validator is not None and live.concurrency_id == "heavy" and live.concurrency_limit == 2
    assert live.time_limit == access.STREAM_TIME_LIMIT <= 60


@pytest.mark.browser
@needs_chromium
def test_live_tab_streams_a_fake_camera(tmp_path_factory):
    video = tmp_path_factory.mktemp("camera") / "astronaut.y4m"
    frame = tmp_path_factory.mktemp("frame") / "frame.png"
    Image.fromarray(webcam_frame()).save(frame)
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-loop", "1", "-i", str(frame), "-t", "4", "-r", "10",
                    "-pix_fmt", "yuv420p", str(video)], check=True)
    camera = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
              f"--use-file-for-fake-video-capture={video}"]
    with app_server(tmp_path_factory) as url, chromium_page(url, extra_args=camera) as page:
        page.get_by_role("tab", name="Live", exact=True).click()
        live = page.locator("#live-in")
        live.get_by_text("Click to Access Webcam").click()
        live.get_by_role("button", name="capture photo").click()  # "Record": starts the stream
        page.locator("#live-status").filter(has_text="face(s)").wait_for(timeout=120_000)
        page.locator("#live-status").filter(has_text=re.compile(r"1 face\(s\) .* [1-9][0-9.]* frames per second")).wait_for(
            timeout=60_000)  # frames keep coming, each analysed
        page.wait_for_function("document.querySelector('#live-out img')?.naturalWidth === 320")
        page.locator("#live-trace .js-plotly-plot").wait_for(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "live.png"), full_page=True)
