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


def webcam_frame(face: bool = True) -> np.ndarray:
    frame = np.full((480, 640, 3), 90, np.uint8)
    if face:
        frame[60:420, 140:500] = np.asarray(Image.open(ROOT / "examples" / "astronaut.jpg").convert("RGB")
                                            .resize((360, 360)))
    return frame


def test_each_frame_is_boxed_labelled_and_added_to_the_trace():
    drawn, trace, chart, status = analyse_frame(webcam_frame(), None)
    assert drawn.shape == (240, 320, 3) and status.startswith("1 face(s)")
    assert [len(faces) for _, faces in trace["frames"]] == [1]
    assert max(trace["frames"][0][1][0], key=trace["frames"][0][1][0].get) == "happy"
    assert [t.name for t in chart.data][:2] == ["angry", "disgust"]
    drawn, trace, chart, status = analyse_frame(webcam_frame(face=False), trace)
    assert "no face in view" in status and len(trace["frames"]) == 2


def test_the_trace_keeps_only_its_window():
    trace = new_trace()
    analyse_frame(webcam_frame(), trace)
    trace["started"] -= TRACE_SECONDS + 5  # as if the first frame came 35 s ago
    analyse_frame(webcam_frame(), trace)
    assert len(trace["frames"]) == 1


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
