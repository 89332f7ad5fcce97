"""Resource limits of the hosted app: heavy work shares one concurrency limit across
endpoints, uploads are cleaned, a text sent to annotation is bounded."""
from __future__ import annotations

import app as app_module

HEAVY = {"image", "audio", "video", "trimodal", "finetune_check"}


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
