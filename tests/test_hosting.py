"""Resource limits of the hosted app: heavy work shares one concurrency limit across
endpoints, uploads are cleaned, a text sent to annotation is bounded, an image is
refused by its declared size before it is decoded."""
from __future__ import annotations

import struct
import time
import zlib

import app as app_module

HEAVY = {"image", "audio", "video", "trimodal", "finetune_check", "live"}


def gray_png(path, width: int, height: int, rows: int | None = None):
    """A black grayscale PNG of ``width`` x ``height`` that stays small on disk (as the
    probes sent), written row by row; ``rows`` < height truncates its pixel data (a
    decompression bomb only needs the header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    packer, row = zlib.compressobj(1), b"\0" * (width + 1)  # filter byte 0, then the row
    pixels = b"".join(packer.compress(row) for _ in range(height if rows is None else rows)) + packer.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))
    return path


def test_heavy_endpoints_share_one_limit_and_uploads_are_cleaned():
    demo = app_module.build_app()
    by_name = {fn.api_name: fn for fn in demo.fns.values() if fn.api_name}
    assert {by_name[name].concurrency_id for name in HEAVY} == {"heavy"}
    assert {by_name[name].concurrency_limit for name in HEAVY} == {2}
    assert demo.delete_cache == app_module.UPLOAD_CACHE


def test_a_text_sent_to_annotation_is_bounded():
    from emotion_app.app.annotate import send_to_annotation
    message = send_to_annotation("text", "so happy " * 120_000)  # ~1 MB, as the probe sent
    assert message.startswith("Not sent to annotation: text is 1079999 characters, over the 2000")


def test_every_endpoint_a_client_can_call_is_one_decided_on():
    """A new endpoint (e.g. one Gradio adds for an example) must be listed here, with its
    role checked in tests/test_access.py, before it ships."""
    from emotion_app.core.labels import LABELS
    demo = app_module.build_app()
    callable_ = {fn.api_name for fn in demo.fns.values() if fn.api_name and fn.api_visibility != "private"}
    annotate = {f"annotate_{action}" for action in ("start", "skip", "back", "undo", *LABELS)}
    expected = ({"image", "text", "audio", "video", "trimodal", "live", "model_card", "models_table", "activate"}
                | {f"send_{m}" for m in ("image", "text", "audio", "video")}
                | annotate | {f"{name}_prediction" for name in annotate}
                | {"annotate_import", "annotate_set_required", "annotate_export", "annotate_queues"}
                | {"annotate_hide_prediction", "annotate_heartbeat", "annotate_set_instructions"}
                | {"annotate_set_order", "annotate_rescore_status", "annotate_rounds"}
                | {f"finetune_{action}" for action in ("queues", "check", "start", "cancel", "job", "poll", "activate",
                                                       "rollback")}
                | {"load_example"} | {f"load_example_{i}" for i in range(1, 5)})  # Gradio's: they return example values
    assert callable_ == expected


def preprocessed(path):
    """``path`` uploaded to the Image tab's Photo, as Gradio preprocesses it when the request
    joins the queue; and the seconds that took."""
    from gradio.data_classes import ImageData

    from emotion_app.app.components import Photo
    start = time.perf_counter()
    value = Photo(type="filepath").preprocess(ImageData(path=str(path), orig_name=path.name))
    return value, time.perf_counter() - start


def test_a_huge_grayscale_png_is_refused_before_it_is_decoded(tmp_path):
    """13000x13000 in 170 KB: Gradio's RGB conversion decoded it whole (0.7 GB, 16 s) in
    the queue's join, before the app's 60-megapixel cap."""
    from emotion_app.app.image import analyze_image
    big = gray_png(tmp_path / "huge_gray.png", 13_000, 13_000)
    value, seconds = preprocessed(big)
    assert value == str(big) and seconds < 1
    assert analyze_image(value)[2].startswith("⚠️ huge_gray.png: image is 13000x13000, over 60 megapixels")


def test_a_decompression_bomb_gets_the_tabs_message_not_a_bare_error(tmp_path):
    from emotion_app.app.image import analyze_image
    bomb = gray_png(tmp_path / "bomb_huge.png", 40_000, 40_000, rows=10)
    value, _ = preprocessed(bomb)
    assert value == str(bomb)
    assert analyze_image(value)[2].startswith("⚠️ bomb_huge.png: image is too large to decode")


def test_a_data_url_is_saved_as_it_came_not_decoded(tmp_path):
    import base64

    from gradio.data_classes import ImageData

    from emotion_app.app.components import Photo
    png = gray_png(tmp_path / "frame.png", 13_000, 13_000).read_bytes()
    start = time.perf_counter()
    saved = Photo(type="filepath").preprocess(ImageData(url="data:image/png;base64," + base64.b64encode(png).decode()))
    assert time.perf_counter() - start < 1 and saved.endswith(".png") and open(saved, "rb").read() == png
